/*
 * dual-map across processes: a shared anonymous read+execute region is
 * inherited by a forked child, which makes its view read+write and writes
 * code; the parent then runs the code through its read+execute view.
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *rx;
	pid_t child;

	tw_init();
	rx = tw_mmap("rx_shared_mmap", NULL, pg, TW_RX, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rx == MAP_FAILED)
		return 1;
	child = fork();
	if (child == 0) {
		if (tw_mprotect("child_rw_mprotect", rx, pg, TW_RW) == 0)
			tw_put_code(rx);
		_exit(0);
	}
	tw_step("child_fork", "fork", child, errno);
	tw_wait_child("writer", child);
	if (memcmp(rx, TW_CODE, sizeof(TW_CODE)) == 0)
		tw_run("parent_call", rx);
	tw_munmap("rx_munmap", rx, pg);
	return tw_done();
}
