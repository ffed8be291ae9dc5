/*
 * anon-exec: anonymous memory that is executable but never writable --
 * once mapped read+execute directly, once read-only then given execute.
 * Nothing is written, so nothing is run (the pages hold zeros).
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *rx, *r;

	tw_init();
	rx = tw_mmap("rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rx != MAP_FAILED)
		tw_munmap("rx_munmap", rx, pg);
	r = tw_mmap("r_mmap", NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r != MAP_FAILED) {
		tw_mprotect("r_to_rx_mprotect", r, pg, TW_RX);
		tw_munmap("r_munmap", r, pg);
	}
	return tw_done();
}
