/*
 * Attack: MADV_DONTFORK. The parent maps 512 clean pages of /etc/passwd R--
 * with a MAP_GROWSDOWN page just above, and marks the file pages
 * MADV_DONTFORK (madvise is not a call a W^X tracer stops at). The forked
 * child has no such pages: a gap below its copy of the GROWSDOWN region. A
 * model that copies the parent's address space for the child keeps them,
 * clean. The child writes code one page below the GROWSDOWN region (the
 * kernel grows it into the gap), mprotects that page R-X and runs it: to
 * the stale model, a clean file page gaining exec.
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "common.h"

#define FILE_PAGES 512

int main(void)
{
	size_t pg = tw_page();
	struct tw_map m;
	char *file, *grows;
	pid_t pid;
	int fd;

	tw_init();
	fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	file = tw_mmap("file_mmap", NULL, (FILE_PAGES + 1) * pg, PROT_READ, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED)
		return 1;
	grows = tw_mmap("growsdown_mmap", file + FILE_PAGES * pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return 1;
	tw_step("dontfork_madvise", "madvise", madvise(file, FILE_PAGES * pg, MADV_DONTFORK), errno);
	pid = fork();
	if (pid == 0) {
		char *below = grows - pg;

		tw_show_map("child_file", file);
		tw_put_code(below); /* a fault below the GROWSDOWN region grows it */
		if (tw_find_map(below, &m) != 0 || m.perms[1] != 'w')
			_exit(0);
		if (tw_mprotect("child_rx_mprotect", below, pg, TW_RX) == 0)
			tw_run("child_call", below);
		_exit(0);
	}
	tw_wait_child("child", pid);
	return tw_done();
}
