/*
 * attack_attach_store FILE|memfd [write]: code stored through a shared
 * mapping of a tmpfs file (or a memfd) before a tracer attached, run from a
 * mapping of it once the tracer is there.
 *
 * The parent makes FILE (a page, written with pwrite: the page exists) and
 * forks, a tick or more later, the child that is attached (it started after
 * the file's last change). The child maps FILE shared read-write, reads the
 * page (tmpfs asks for no write notice: the read fault maps it writable),
 * then stores the code through it (no fault, so no change time: tmpfs has
 * no page_mkwrite and only a write fault stamps the inode), unmaps and
 * closes it. `write` stores with a write fault instead (the kernel stamps
 * the inode). COUNT says whether the change time moved (1) or not (0).
 * It says READY with its pid and waits for a line on stdin (a
 * tracer attaches), then maps FILE read+execute (store_map_rx) and calls it.
 * `memfd`: the parent makes a memfd instead and keeps it; the child maps it
 * through the descriptor it inherited, closes that, and after the attach
 * opens the parent's (/proc/PPID/fd/N) read-only to map it.
 */
#include "common.h"

#include <sys/stat.h>

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	unsigned char *zero = calloc(1, pg);
	struct stat before, after;
	char line[64], path[64];
	unsigned char *view;
	void *code;
	volatile unsigned char sink;
	pid_t child;
	int fd, memfd;

	tw_init();
	if (argc < 2 || zero == NULL) {
		fprintf(stderr, "usage: attack_attach_store FILE|memfd [write]\n");
		return 2;
	}
	memfd = strcmp(argv[1], "memfd") == 0;
	fd = memfd ? memfd_create("store", 0) : open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || pwrite(fd, zero, pg, 0) != (ssize_t)pg)
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), fd);
	if (!memfd && close(fd) != 0)
		return 1;
	usleep(50000);  /* more than a tick: the child starts after the change */
	child = fork();
	if (child < 0)
		return 1;
	if (child > 0)
		return tw_wait_child("store_child", child) == 0 ? 0 : 1;
	if (!memfd)
		fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &before) != 0)
		return 1;
	view = tw_mmap("store_map_rw", NULL, pg, TW_RW, MAP_SHARED, fd, 0);
	if (view == MAP_FAILED)
		return tw_done();
	usleep(20000);  /* the clock moves on: a stamp would show */
	if (argc < 3)
		sink = view[0];
	(void)sink;
	tw_put_code(view);
	if (fstat(fd, &after) != 0 || munmap(view, pg) != 0 || close(fd) != 0)
		return 1;
	tw_emit("COUNT %d", before.st_ctim.tv_sec != after.st_ctim.tv_sec
		|| before.st_ctim.tv_nsec != after.st_ctim.tv_nsec);
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	fd = open(memfd ? path : argv[1], O_RDONLY | O_CLOEXEC);
	code = tw_mmap("store_map_rx", NULL, pg, TW_RX, MAP_PRIVATE, fd, 0);
	if (code != MAP_FAILED)
		tw_run("store_call", code);
	return tw_done();
}
