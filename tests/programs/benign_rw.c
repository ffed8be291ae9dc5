/* Benign control: plain read+write memory that is never executable. */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	char *p;

	tw_init();
	p = tw_mmap("rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		memset(p, 0x5a, pg);
		tw_mprotect("rw_to_r_mprotect", p, pg, PROT_READ);
		tw_munmap("rw_munmap", p, pg);
	}
	return tw_done();
}
