/*
 * Waits for a line on stdin (so a tracer can attach first), then maps a page
 * writable and executable and runs code there, then waits for another line
 * (so the tracer can detach while it still runs). EOF counts as a line.
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	char line[64];
	void *p;

	tw_init();
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	p = tw_mmap("wx_mmap", NULL, pg, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		tw_put_code(p);
		tw_run("wx_call", p);
		tw_munmap("wx_munmap", p, pg);
	}
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	return tw_done();
}
