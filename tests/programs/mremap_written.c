/*
 * w-to-x across a move: code written into read+write memory, the region moved
 * with mremap to an address that never held anything written, then made
 * read+execute there. Only a model that carries history along a move sees it.
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *p, *dest, *moved;

	tw_init();
	p = tw_mmap("rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	tw_put_code(p);
	/* Reserve the destination so the move is certain, not up to the kernel. */
	dest = tw_mmap("dest_reserve_mmap", NULL, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dest == MAP_FAILED)
		return 1;
	moved = mremap(p, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
	tw_step_addr("code_mremap", "mremap", moved, MAP_FAILED, errno);
	if (moved == MAP_FAILED)
		return 1;
	if (tw_mprotect("moved_rx_mprotect", moved, pg, TW_RX) == 0)
		tw_run("moved_call", moved);
	tw_munmap("moved_munmap", moved, pg);
	return tw_done();
}
