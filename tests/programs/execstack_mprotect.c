/* execstack: a normal (non-executable) stack, one page of it made read+write+execute by mprotect. */
#include "common.h"

int main(void)
{
	unsigned char buf[32] __attribute__((aligned(16)));
	size_t pg = tw_page();

	tw_init();
	tw_show_map("stack_before", buf);
	if (tw_mprotect("stack_mprotect", tw_page_of(buf), pg, TW_RWX) == 0) {
		tw_show_map("stack_after", buf);
		tw_put_code(buf);
		tw_run("stack_call", buf);
	}
	return tw_done();
}
