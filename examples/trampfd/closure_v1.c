/*
 * A libffi-style closure allocator on trampfd v1: closure_alloc() returns a
 * function pointer that calls one generic handler with the closure's data,
 * and no page of the program is ever writable and executable.
 *
 * Each closure is a v1 trampoline whose register context loads the closure
 * pointer into r10 (as libffi's x86-64 closures do) and jumps to
 * closure_entry, which hands r10 to the C handler as its third argument.
 *
 *   gcc -I "$(trampwatch include-path)" -o closure_v1 examples/trampfd/closure_v1.c
 *   trampwatch run --emulate-trampfd -- ./closure_v1
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "trampfd.h"

struct closure;
typedef long (*closure_fn)(long, long);
typedef long (*handler_fn)(long, long, struct closure *);

struct closure {
	closure_fn code; /* what the program calls */
	handler_fn handler;
	void *user_data;
};

/* r10 -> rdx (the handler's third argument), then the generic C handler. */
void closure_entry(void);
__asm__(".text\n"
	".globl closure_entry\n"
	"closure_entry:\n"
	"	mov %r10, %rdx\n"
	"	jmp generic_handler\n");

long generic_handler(long a, long b, struct closure *c)
{
	return c->handler(a, b, c);
}

static struct closure *closure_alloc(handler_fn handler, void *user_data)
{
	struct trampfd_user user = {0, 0};
	struct closure *c = malloc(sizeof(*c));
	int fd = trampfd_create(TRAMPFD_USER, &user, 0);
	struct trampfd_reg regs[] = {
		{TRAMPFD_REG_R10, 0, (uint64_t)(uintptr_t)c},
		{TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)closure_entry},
	};
	uint64_t allowed[] = {(uint64_t)(uintptr_t)closure_entry};

	if (!c || fd < 0) {
		perror("trampfd_create (run under trampwatch run --emulate-trampfd)");
		exit(1);
	}
	/* Only closure_entry may ever be a target of this trampoline. */
	if (trampfd_set_allowed_pcs(fd, allowed, 1) || trampfd_set_regs(fd, regs, 2)) {
		perror("trampfd context");
		exit(1);
	}
	c->code = (closure_fn)trampfd_map(fd);
	if (!c->code) {
		perror("trampfd_map");
		exit(1);
	}
	/* The mapping keeps the trampoline; the descriptor is no longer needed. */
	close(fd);
	c->handler = handler;
	c->user_data = user_data;
	return c;
}

static long scale(long a, long b, struct closure *c)
{
	return (a + b) * *(long *)c->user_data;
}

int main(void)
{
	static long ten = 10, thousand = 1000;
	struct closure *by_ten = closure_alloc(scale, &ten);
	struct closure *by_thousand = closure_alloc(scale, &thousand);

	printf("by_ten(1, 2) = %ld\n", by_ten->code(1, 2));
	printf("by_thousand(1, 2) = %ld\n", by_thousand->code(1, 2));
	thousand = 7;
	printf("by_thousand(1, 2) after the data changed = %ld\n", by_thousand->code(1, 2));
	return 0;
}
