/*
 * Attack: memory calls spelled in the x32 ABI (the x86-64 number with bit
 * 30 set, __X32_SYSCALL_BIT): code written into RW anonymous memory, then
 * mprotect R-X through the x32 number, then the same for a fresh RWX mmap.
 * On a kernel built without x32 (or booted without it) both fail ENOSYS
 * natively; on one with it they succeed and the code runs. Either way a
 * tracer must judge them as the x86-64 calls they are.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>

#include "common.h"

#define X32 0x40000000L

int main(void)
{
	size_t pg = tw_page();
	char *rw = tw_mmap("x32_rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long rc;

	tw_init();
	if (rw == MAP_FAILED)
		return 1;
	tw_put_code(rw);
	rc = syscall(X32 | SYS_mprotect, rw, pg, TW_RX);
	tw_step("x32_rx_mprotect", "mprotect", rc, errno);
	if (rc == 0)
		tw_run("x32_mprotect_call", rw);
	rc = syscall(X32 | SYS_mmap, 0UL, pg, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tw_step("x32_wx_mmap", "mmap", rc, errno);
	if (rc != -1) {
		tw_put_code((void *)rc);
		tw_run("x32_mmap_call", (void *)rc);
	}
	return tw_done();
}
