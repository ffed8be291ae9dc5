/* wx-map: one anonymous mapping that is writable and executable from the start. */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *p;

	tw_init();
	p = tw_mmap("wx_mmap", NULL, pg, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		tw_put_code(p);
		tw_run("wx_call", p);
		tw_munmap("wx_munmap", p, pg);
	}
	return tw_done();
}
