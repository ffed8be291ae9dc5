/*
 * dual-map without any file descriptor: a shared anonymous read+execute
 * region duplicated by mremap(old_size = 0) into a second view of the same
 * pages; the second view is made read+write, code is written through it and
 * run through the first. No single mapping is ever writable and executable.
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *rx, *alias;

	tw_init();
	rx = tw_mmap("rx_shared_mmap", NULL, pg, TW_RX, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rx == MAP_FAILED)
		return 1;
	alias = mremap(rx, 0, pg, MREMAP_MAYMOVE);
	tw_step_addr("alias_mremap", "mremap", alias, MAP_FAILED, errno);
	if (alias != MAP_FAILED) {
		if (tw_mprotect("alias_rw_mprotect", alias, pg, TW_RW) == 0) {
			tw_put_code(alias);
			tw_run("alias_call", rx);
		}
		tw_munmap("alias_munmap", alias, pg);
	}
	tw_munmap("rx_munmap", rx, pg);
	return tw_done();
}
