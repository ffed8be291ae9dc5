/*
 * A 64-bit program making an i386 syscall through int $0x80: mprotect (i386
 * number 125) of a low (MAP_32BIT) read+write page to read+write+execute.
 * A filter that only knows x86-64 numbers sees syscall 125 (capget) here.
 */
#include "common.h"

#define I386_NR_MPROTECT 125

/* The 64-bit int $0x80 path takes ebx/ecx/edx and does not preserve r8-r11. */
static long int80_syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

int main(void)
{
	size_t pg = tw_page();
	void *p;
	long rc;

	tw_init();
	p = tw_mmap("low_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	rc = tw_step_raw("i386_mprotect", "mprotect",
			 int80_syscall3(I386_NR_MPROTECT, (long)(uintptr_t)p, (long)pg, TW_RWX));
	if (rc == 0) {
		tw_show_map("low_region", p);
		tw_put_code(p);
		tw_run("low_call", p);
	}
	tw_munmap("low_munmap", p, pg);
	return tw_done();
}
