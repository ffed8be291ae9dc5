/*
 * attach_copied: code written into a private file page before a tracer
 * attached, made read-only, then executable once the tracer is there.
 *
 * Maps the first two pages of /bin/sh private read+write (a file older than
 * the process: its own program may have just been built), writes code into
 * the first (the kernel makes the process its own copy of
 * the page) and only reads the second, makes both read-only, says READY
 * with its pid and waits for a line on stdin (a tracer attaches). Then it
 * makes the read page read+execute (clean_rx: a clean file page) and the
 * written one (copy_rx: the written copy), and calls the code. The
 * protections at attach say both pages are alike; only the kernel's pages
 * (pagemap: a copy, not the file's page) tell the written one apart. With
 * `wait`, another line is waited for before the end.
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "common.h"

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	char line[64];
	unsigned char *p;

	tw_init();
	p = tw_written_copy("/bin/sh");
	if (p == MAP_FAILED)
		return tw_done();
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	tw_mprotect("clean_rx", p + pg, pg, TW_RX);
	if (tw_mprotect("copy_rx", p, pg, TW_RX) == 0)
		tw_run("copy_call", p);
	tw_wait_if_asked(argc, argv);
	return tw_done();
}
