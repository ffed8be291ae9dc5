/*
 * Attack attempt: protection keys as a way to write executable memory. The
 * program's own read+execute text page is given a fresh key
 * (pkey_mprotect R-X, no exec gain) and then made execute-only (mprotect
 * PROT_EXEC: the kernel gives it its execute-only key); each time every
 * key's rights are opened in PKRU (wrpkru 0, unprivileged) and the code is
 * written over tw_patch_target. PKRU only takes data access away: every
 * write faults (STEP ... errno=EFAULT, from the SIGSEGV), natively too, and
 * tw_patch_target still returns 7. Where the CPU or kernel has no
 * protection keys: `STEP pkey_alloc ... rc=-1`.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <sys/syscall.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

static sigjmp_buf guard;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(guard, 1);
}

static void open_pkru(void)
{
	__asm__ volatile("wrpkru" : : "a"(0), "c"(0), "d"(0) : "memory");
}

/* Write the code over tw_patch_target with every key open; report it. */
static void try_write(const char *label)
{
	volatile unsigned char *dst = (volatile unsigned char *)(uintptr_t)tw_patch_target;

	open_pkru();
	if (sigsetjmp(guard, 1) == 0) {
		for (size_t i = 0; i < sizeof(TW_CODE); i++)
			dst[i] = TW_CODE[i];
		tw_step(label, "write", 0, 0);
	} else {
		tw_step(label, "write", -1, EFAULT);
	}
	if (tw_patch_target() == TW_CODE_RESULT)
		tw_run(label, (const void *)tw_patch_target);
}

int main(void)
{
	void *page = tw_page_of((const void *)tw_patch_target);
	int pkey;

	tw_init();
	signal(SIGSEGV, on_segv);
	pkey = (int)syscall(SYS_pkey_alloc, 0, 0);
	tw_step("pkey_alloc", "pkey_alloc", pkey, errno);
	if (pkey < 0)
		return tw_done();
	tw_step("keyed_rx", "pkey_mprotect", syscall(SYS_pkey_mprotect, page, tw_page(), TW_RX, pkey), errno);
	try_write("keyed_text");
	if (tw_mprotect("exec_only", page, tw_page(), PROT_EXEC) == 0)
		try_write("exec_only_text");
	tw_mprotect("restore_rx", page, tw_page(), TW_RX);
	return tw_done();
}
