/*
 * execheap [wait]: grow the brk heap, then make one page of it
 * read+write+execute. With `wait`, wait for a line on stdin before the end
 * (a monitor then reads the process's maps while it lives).
 */
#include "common.h"

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	char *old, *page;

	tw_init();
	/* Two pages more than needed, so a whole aligned page lies inside the new heap. */
	old = sbrk((intptr_t)(2 * pg));
	tw_step_addr("heap_sbrk", "brk", old, (void *)-1, errno);
	if (old == (void *)-1)
		return 1;
	page = tw_page_of(old + pg);
	tw_show_map("heap_before", page);
	if (tw_mprotect("heap_mprotect", page, pg, TW_RWX) == 0) {
		tw_show_map("heap_after", page);
		tw_put_code(page);
		tw_run("heap_call", page);
	}
	tw_wait_if_asked(argc, argv);
	return tw_done();
}
