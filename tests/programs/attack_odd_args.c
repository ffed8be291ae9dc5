/*
 * Attack on the tracer itself: memory calls with arguments no library would
 * pass (lengths near 2^64, addresses at the top of the address space,
 * unaligned starts, descriptors that are not open, mremap of nothing,
 * old_mmap blocks at unmapped or kernel addresses, ipc(2) with junk), on
 * both ABIs. Each must simply fail or succeed as the kernel decides; the
 * tracer must neither crash nor stall. Prints one STEP per call, COUNT of
 * calls made and DONE; never runs code.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>

#include "common.h"

/* ebp (the sixth argument) is left alone: every call here takes five. */
static long int80(long nr, long a, long b, long c, long d, long e)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static long calls;

static void x64(const char *label, const char *name, long nr, long a, long b, long c, long d, long e, long f)
{
	calls++;
	tw_step_raw(label, name, syscall(nr, a, b, c, d, e, f));
}

static void i386(const char *label, const char *name, long nr, long a, long b, long c, long d, long e, long f)
{
	calls++;
	(void)f;
	tw_step_raw(label, name, int80(nr, a, b, c, d, e));
}

int main(void)
{
	const long top = (long)0x7ffffffff000L, huge = -4096L, kernel = (long)0xffffffff81000000UL;
	size_t pg = tw_page();
	char *p;

	tw_init();
	p = tw_mmap("odd_base", NULL, 4 * pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	x64("mprotect_huge", "mprotect", SYS_mprotect, (long)p, huge, PROT_READ, 0, 0, 0);
	x64("mprotect_top", "mprotect", SYS_mprotect, top, huge, TW_RX, 0, 0, 0);
	x64("mprotect_unaligned", "mprotect", SYS_mprotect, (long)p + 1, (long)pg, TW_RX, 0, 0, 0);
	x64("mprotect_kernel", "mprotect", SYS_mprotect, kernel, (long)pg, TW_RX, 0, 0, 0);
	x64("mprotect_badprot", "mprotect", SYS_mprotect, (long)p, (long)pg, -1, 0, 0, 0);
	x64("pkey_badkey", "pkey_mprotect", SYS_pkey_mprotect, (long)p, (long)pg, TW_RX, 1L << 40, 0, 0);
	x64("munmap_huge", "munmap", SYS_munmap, 0, huge, 0, 0, 0, 0);
	x64("munmap_kernel", "munmap", SYS_munmap, kernel, (long)pg, 0, 0, 0, 0);
	x64("mmap_badfd", "mmap", SYS_mmap, 0, (long)pg, TW_RX, MAP_PRIVATE, 1 << 30, 0);
	x64("mmap_negfd", "mmap", SYS_mmap, 0, (long)pg, TW_RX, MAP_SHARED, -2, 0);
	x64("mmap_fixed_top", "mmap", SYS_mmap, top, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
	    0);
	x64("mmap_hugelen", "mmap", SYS_mmap, 0, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	x64("mmap_badflags", "mmap", SYS_mmap, 0, (long)pg, PROT_READ, -1, -1, 0);
	x64("mremap_nothing", "mremap", SYS_mremap, top, (long)pg, 2 * (long)pg, MREMAP_MAYMOVE, 0, 0);
	x64("mremap_zero_private", "mremap", SYS_mremap, (long)p, 0, (long)pg, MREMAP_MAYMOVE, 0, 0);
	x64("mremap_huge", "mremap", SYS_mremap, (long)p, (long)pg, huge, MREMAP_MAYMOVE, 0, 0);
	x64("mremap_fixed_kernel", "mremap", SYS_mremap, (long)p, (long)pg, (long)pg,
	    MREMAP_MAYMOVE | MREMAP_FIXED, kernel, 0);
	x64("brk_kernel", "brk", SYS_brk, kernel, 0, 0, 0, 0, 0);
	x64("brk_zero", "brk", SYS_brk, 0, 0, 0, 0, 0, 0);
	x64("shmat_bad", "shmat", SYS_shmat, -1, kernel, -1, 0, 0, 0);
	x64("shmdt_kernel", "shmdt", SYS_shmdt, kernel, 0, 0, 0, 0, 0);
	x64("personality_junk", "personality", SYS_personality, 0xffffffffL, 0, 0, 0, 0, 0);
	/* i386: old_mmap (90) blocks at bad addresses, mmap2 (192), mprotect (125), ipc (117). */
	i386("old_mmap_null", "mmap", 90, 0, 0, 0, 0, 0, 0);
	i386("old_mmap_end", "mmap", 90, 0xfffffff0L, 0, 0, 0, 0, 0);
	i386("old_mmap_half", "mmap", 90, (long)p + 4 * (long)pg - 12, 0, 0, 0, 0, 0);
	i386("mmap2_negfd", "mmap2", 192, 0, (long)pg, TW_RX, MAP_SHARED, -5, -1);
	i386("i386_mprotect_top", "mprotect", 125, 0xfffff000L, 0xffffffffL, TW_RX, 0, 0, 0);
	i386("ipc_shmat_junk", "ipc", 117, 21, -1, -1, 0xfffffff0L, 0xfffffff0L, 0);
	i386("ipc_shmdt_junk", "ipc", 117, 22, 0, 0, 0, 0xfffff000L, 0);
	i386("ipc_other", "ipc", 117, 0x7fff, 1, 2, 3, 4, 5);
	i386("mremap_junk", "mremap", 163, 0xfffff000L, 0xffffffffL, 0xffffffffL, 7, 0xfffff000L, 0);
	tw_emit("COUNT %ld", calls);
	return tw_done();
}
