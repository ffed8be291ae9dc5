/* w-to-x: the JIT pattern -- write code into read+write memory, then flip it to read+execute. */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *p;

	tw_init();
	p = tw_mmap("rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	tw_put_code(p);
	if (tw_mprotect("rx_mprotect", p, pg, TW_RX) == 0)
		tw_run("jit_call", p);
	tw_munmap("rx_munmap", p, pg);
	return tw_done();
}
