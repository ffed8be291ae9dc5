/*
 * w-to-x through the pkey_mprotect syscall (pkey -1: no key, same as
 * mprotect): write code, flip read+write to read+execute. The raw syscall,
 * because glibc's pkey_mprotect() turns key -1 into a plain mprotect().
 */
#include "common.h"

#include <sys/syscall.h>

int main(void)
{
	size_t pg = tw_page();
	void *p;
	int rc;

	tw_init();
	p = tw_mmap("rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	tw_put_code(p);
	rc = (int)syscall(SYS_pkey_mprotect, p, pg, TW_RX, -1);
	tw_step("rx_pkey_mprotect", "pkey_mprotect", rc, errno);
	if (rc == 0)
		tw_run("pkey_call", p);
	tw_munmap("rx_munmap", p, pg);
	return tw_done();
}
