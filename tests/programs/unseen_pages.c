/*
 * Pages no call made (issue 10, route 4): the kernel grows the main stack and
 * a MAP_GROWSDOWN region on a fault, with no mmap a tracer could see. Code is
 * written into a freshly grown page of each, which is then made read+execute.
 */
#include "common.h"

#define DEEP (1 << 20)

/* Runs with a 1 MiB frame: its lowest pages are stack the kernel added at the fault. */
static __attribute__((noinline)) void grown_stack(void)
{
	volatile unsigned char buf[DEEP];
	size_t pg = tw_page();
	unsigned char *page = tw_page_of((const void *)&buf[pg]);

	for (size_t i = 0; i < DEEP; i += 512)
		buf[i] = 0;
	tw_put_code(page);
	if (tw_mprotect("stack_grown_mprotect", page, pg, TW_RX) == 0) {
		tw_run("stack_grown_call", page);
		tw_mprotect("stack_grown_restore", page, pg, TW_RW);
	}
}

int main(void)
{
	size_t pg = tw_page(), room = 8 << 20;
	unsigned char *top, *grown, *hole;

	tw_init();
	grown_stack();

	/* Free room below the region: the kernel grows it only past its guard gap. */
	hole = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hole == MAP_FAILED)
		return 1;
	munmap(hole, room);
	top = tw_mmap("growsdown_mmap", hole + room - pg, pg, TW_RW,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
	if (top == MAP_FAILED)
		return 1;
	grown = top - pg;
	/* A fault just below the region grows it by a page. */
	tw_put_code(grown);
	tw_show_map("growsdown_grown", grown);
	if (tw_mprotect("growsdown_grown_mprotect", grown, pg, TW_RX) == 0)
		tw_run("growsdown_grown_call", grown);
	return tw_done();
}
