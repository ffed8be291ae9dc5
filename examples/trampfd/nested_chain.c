/*
 * A GCC nested function without an executable stack. GCC passes a nested
 * function its enclosing frame (the static chain) in r10 and, when the
 * function's address is taken, builds a trampoline on the stack that loads
 * r10 and jumps: the stack must be executable (examples/nested.c). Here a
 * trampfd v1 trampoline loads r10 instead.
 *
 * The "nested" comparator counts its calls in the enclosing frame of
 * sort_counting(), which hands it to qsort() as a plain function pointer.
 *
 *   gcc -I "$(trampwatch include-path)" -o nested_chain examples/trampfd/nested_chain.c
 *   trampwatch run --emulate-trampfd -- ./nested_chain
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "trampfd.h"

struct frame {
	long comparisons;
	int descending;
};

/* The nested function's body: (a, b) plus the static chain from r10. */
void compare_entry(void);
__asm__(".text\n"
	".globl compare_entry\n"
	"compare_entry:\n"
	"	mov %r10, %rdx\n"
	"	jmp compare_body\n");

int compare_body(const void *a, const void *b, struct frame *chain)
{
	int x = *(const int *)a, y = *(const int *)b;

	chain->comparisons++;
	return chain->descending ? (y > x) - (y < x) : (x > y) - (x < y);
}

static void sort_counting(int *values, size_t n, int descending)
{
	struct frame frame = {0, descending}; /* the enclosing function's locals */
	struct trampfd_user user = {0, 0};
	struct trampfd_reg regs[] = {
		{TRAMPFD_REG_R10, 0, (uint64_t)(uintptr_t)&frame},
		{TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)compare_entry},
	};
	int fd = trampfd_create(TRAMPFD_USER, &user, 0);
	int (*compare)(const void *, const void *);

	if (fd < 0 || trampfd_set_regs(fd, regs, 2)) {
		perror("trampfd (run under trampwatch run --emulate-trampfd)");
		exit(1);
	}
	compare = (int (*)(const void *, const void *))trampfd_map(fd);
	if (!compare) {
		perror("trampfd_map");
		exit(1);
	}
	qsort(values, n, sizeof(*values), compare);
	printf("sorted %s with %ld comparisons:", descending ? "descending" : "ascending", frame.comparisons);
	for (size_t i = 0; i < n; i++)
		printf(" %d", values[i]);
	printf("\n");
	munmap((void *)compare, TRAMPFD_PAGE_SIZE);
	close(fd);
}

int main(void)
{
	int values[] = {5, 3, 9, 1, 7, 2, 8};

	sort_counting(values, 7, 0);
	sort_counting(values, 7, 1);
	return 0;
}
