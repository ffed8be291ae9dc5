/*
 * A thread made by the i386 clone (`int $0x80`, number 120) from 64-bit code
 * (issue 10, route 6): the registers say x86-64 while the call is i386's, so
 * flags decoded for the wrong ABI make it look like a separate process with a
 * copy of the address space. The thread (raw syscalls only: it has no TLS of
 * its own) maps a page read+write, writes code and makes it read+execute, and
 * writes code into a second page it maps read+write; the main thread runs the
 * first if that worked, and makes the second read+execute and runs it (a
 * tracer that gave the thread its own copy never saw that page written).
 * READY prints the process id every event must carry.
 */
#include "common.h"

#include <sched.h>

#define I386_CLONE 120
#define THREAD_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM)

static volatile long thread_mmap, thread_mprotect = 1, second_mmap;
static volatile int thread_done;

static long raw6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

__attribute__((used, noinline, noreturn)) void tw_int80_thread(void)
{
	long p = raw6(9, 0, 4096, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	thread_mmap = p;
	if (p > 0) {
		for (unsigned i = 0; i < sizeof(TW_CODE); i++)
			((volatile unsigned char *)p)[i] = TW_CODE[i];
		thread_mprotect = raw6(10, p, 4096, TW_RX, 0, 0, 0);
	}
	p = raw6(9, 0, 4096, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p > 0)
		for (unsigned i = 0; i < sizeof(TW_CODE); i++)
			((volatile unsigned char *)p)[i] = TW_CODE[i];
	second_mmap = p;
	thread_done = 1;
	raw6(60, 0, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}

int main(void)
{
	unsigned char *stack;
	long tid;

	tw_init();
	tw_emit("READY %d", (int)getpid());
	stack = mmap(NULL, 65536, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (stack == MAP_FAILED)
		return 1;
	/* The child returns from int $0x80 on the new stack, still in 64-bit mode. */
	__asm__ volatile("int $0x80\n\t"
			 "test %%eax, %%eax\n\t"
			 "jnz 1f\n\t"
			 "call tw_int80_thread\n"
			 "1:"
			 : "=a"(tid)
			 : "a"(I386_CLONE), "b"(THREAD_FLAGS), "c"(stack + 65536 - 64), "d"(0), "S"(0), "D"(0)
			 : "memory", "r8", "r9", "r10", "r11", "cc");
	tw_step_raw("int80_clone", "clone", tid);
	if (tid <= 0)
		return 1;
	while (!thread_done)
		sched_yield();
	tw_step_raw("thread_rx_mprotect", "mprotect", thread_mprotect);
	if (thread_mprotect == 0)
		tw_run("int80_thread_call", (void *)thread_mmap);
	if (second_mmap > 0 && tw_mprotect("main_rx_mprotect", (void *)second_mmap, tw_page(), TW_RX) == 0)
		tw_run("main_call", (void *)second_mmap);
	return tw_done();
}
