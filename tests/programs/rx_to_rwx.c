/* wx-protect from the other side: read+execute anonymous memory given write too. */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *p;

	tw_init();
	p = tw_mmap("rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	if (tw_mprotect("rwx_mprotect", p, pg, TW_RWX) == 0) {
		tw_put_code(p);
		tw_run("rwx_call", p);
	}
	tw_munmap("rx_munmap", p, pg);
	return tw_done();
}
