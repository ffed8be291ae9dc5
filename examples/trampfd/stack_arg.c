/*
 * A stack context with TRAMPFD_SET_SP: the trampoline supplies a seventh
 * argument, which the x86-64 ABI passes on the stack.
 *
 * At the invocation the stack pointer holds the caller's return address;
 * the 16 bytes of data {return stub, argument} are pushed below it and the
 * stack pointer is moved to them, rounded down to 16 and lowered by 8 - the
 * alignment a function sees right after a call. So the target finds the
 * argument at 8(%rsp) and returns into the stub, which drops the 24 bytes
 * the stack context added (the call site's rsp was 16-aligned, as the ABI
 * requires, so the rounding always takes 8 bytes) and returns to the caller.
 *
 *   gcc -I "$(trampwatch include-path)" -o stack_arg examples/trampfd/stack_arg.c
 *   trampwatch run --emulate-trampfd -- ./stack_arg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "trampfd.h"

void return_stub(void);
__asm__(".text\n"
	".globl return_stub\n"
	"return_stub:\n"
	"	add $24, %rsp\n"
	"	ret\n");

static long seven(long a, long b, long c, long d, long e, long f, long g)
{
	return a + 10 * b + 100 * c + 1000 * d + 10000 * e + 100000 * f + 1000000 * g;
}

int main(void)
{
	struct trampfd_user user = {0, 0};
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)seven}};
	uint64_t data[2] = {(uint64_t)(uintptr_t)return_stub, 7};
	int fd = trampfd_create(TRAMPFD_USER, &user, 0);
	long (*six)(long, long, long, long, long, long);

	if (fd < 0 || trampfd_set_regs(fd, regs, 1) ||
	    trampfd_set_stack(fd, TRAMPFD_SET_SP, 0, data, sizeof(data))) {
		perror("trampfd (run under trampwatch run --emulate-trampfd)");
		return 1;
	}
	six = (long (*)(long, long, long, long, long, long))trampfd_map(fd);
	if (!six) {
		perror("trampfd_map");
		return 1;
	}
	printf("seven(1..6, 7 from the stack context) = %ld\n", six(1, 2, 3, 4, 5, 6));
	printf("again = %ld\n", six(6, 5, 4, 3, 2, 1));
	return 0;
}
