/*
 * execstack_mprotect [wait]: a normal (non-executable) stack, one page of it
 * made read+write+execute by mprotect; with `wait`, the process then waits
 * for a line on stdin before its end.
 */
#include "common.h"

int main(int argc, char **argv)
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
	tw_wait_if_asked(argc, argv);
	return tw_done();
}
