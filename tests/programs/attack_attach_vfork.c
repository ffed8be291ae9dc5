/*
 * attack_attach_vfork: a call in flight when the tracer attaches changes
 * the address space after the tracer read it.
 *
 * Writes code into a private read+write anonymous page, says READY with its
 * pid and calls vfork(): the parent stays inside vfork (a wait no ptrace
 * stop interrupts) while the child, which shares its address space and was
 * made before any tracer came, waits for a line on stdin (the tracer has
 * attached to the parent meanwhile), makes the page read+execute and ends.
 * The parent, back from vfork with no call of its own, calls the page.
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	unsigned char *page;
	char c;
	pid_t child;

	tw_init();
	page = tw_mmap("code_map", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return tw_done();
	tw_put_code(page);
	tw_emit("READY %d", (int)getpid());
	child = vfork();
	if (child == 0) {
		if (read(0, &c, 1) < 0)
			c = 0;
		mprotect(page, pg, TW_RX);
		_exit(0);
	}
	if (child > 0)
		tw_run("vfork_call", page);
	return tw_done();
}
