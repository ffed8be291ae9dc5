/*
 * The closure allocator of closure_v1.c on a trampfd v2 table: one
 * read+execute page of trampolines that the program never can write; a
 * closure is a table slot whose code and data words are ordinary memory.
 * Calls run natively (no fault, no tracer stop).
 *
 * Slot X loads code[X] into r11 and data[X] into r10, then jumps to r11.
 *
 *   gcc -I "$(trampwatch include-path)" -o closure_v2 examples/trampfd/closure_v2.c
 *   trampwatch run --emulate-trampfd -- ./closure_v2
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "trampfd.h"

#define SLOTS 16

struct closure;
typedef long (*closure_fn)(long, long);
typedef long (*handler_fn)(long, long, struct closure *);

struct closure {
	closure_fn code;
	handler_fn handler;
	void *user_data;
	int slot;
};

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

static struct {
	char *page;
	uint32_t code_size;
	uint64_t code[SLOTS], data[SLOTS];
	int used[SLOTS];
} table;

static void table_init(void)
{
	struct trampfd_info info;
	int fd = trampfd_create_table(&info);
	struct trampfd_code code = {SLOTS, TRAMPFD_V2_REG_R11, (uint64_t)(uintptr_t)table.code};
	struct trampfd_data data = {TRAMPFD_V2_REG_R10, 0, (uint64_t)(uintptr_t)table.data};

	if (fd < 0 || info.ntrampolines < SLOTS) {
		perror("trampfd_create_table (run under trampwatch run --emulate-trampfd)");
		exit(1);
	}
	table.page = trampfd_map_table(fd, &info, &code, &data);
	if (!table.page) {
		perror("trampfd_map_table");
		exit(1);
	}
	table.code_size = info.code_size;
}

static struct closure *closure_alloc(handler_fn handler, void *user_data)
{
	struct closure *c = malloc(sizeof(*c));
	int slot = 0;

	while (slot < SLOTS && table.used[slot])
		slot++;
	if (!c || slot == SLOTS)
		return NULL;
	table.used[slot] = 1;
	table.code[slot] = (uint64_t)(uintptr_t)closure_entry;
	table.data[slot] = (uint64_t)(uintptr_t)c;
	c->code = (closure_fn)(table.page + (size_t)table.code_size * slot);
	c->handler = handler;
	c->user_data = user_data;
	c->slot = slot;
	return c;
}

static void closure_free(struct closure *c)
{
	table.used[c->slot] = 0;
	table.code[c->slot] = 0;
	free(c);
}

static long scale(long a, long b, struct closure *c)
{
	return (a + b) * *(long *)c->user_data;
}

int main(void)
{
	static long ten = 10, thousand = 1000;
	struct closure *by_ten, *by_thousand;
	long i, sum = 0;

	table_init();
	by_ten = closure_alloc(scale, &ten);
	by_thousand = closure_alloc(scale, &thousand);
	printf("by_ten(1, 2) = %ld\n", by_ten->code(1, 2));
	printf("by_thousand(1, 2) = %ld\n", by_thousand->code(1, 2));
	for (i = 0; i < 1000000; i++)
		sum += by_ten->code(i, 0);
	printf("a million native calls: %ld\n", sum);
	closure_free(by_ten);
	printf("slot %d reused: %d\n", by_thousand->slot, closure_alloc(scale, &ten)->slot);
	return 0;
}
