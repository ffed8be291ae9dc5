/*
 * attack_attach_held_fd: descriptors opened before a tracer attached, used
 * after it to write code that is then run.
 *
 * Before READY (no tracer yet) the program opens what it will write with
 * and maps what it will run, all read-only or clean:
 *   file    a file (argv[2], default /tmp/tw_held_fd) opened O_RDWR, its
 *           first page mapped private read-only; after the attach the
 *           code is pwritten into the file and the mapping made R-X
 *   filemap as file, but after the attach the file is mapped anew R-X
 *   memfd   a memfd, mapped shared read-only; pwrite, mprotect R-X
 *   mem     /proc/self/mem opened O_RDWR; a private R-X mapping of its own
 *           program file; after the attach the code is pwritten over that
 *           page through the mem descriptor and called (no memory call at all)
 * Then it prints READY, waits for a line on stdin, and goes on.
 */
#include "common.h"

#include <sys/stat.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "file";
	const char *path = argc > 2 ? argv[2] : "/tmp/tw_held_fd";
	size_t pg = tw_page();
	unsigned char page[4096] = {0};
	char line[64];
	unsigned char *p;
	int fd;

	tw_init();
	if (!strcmp(mode, "mem")) {
		int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

		fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		tw_step("open_mem", "open", fd, fd < 0 ? errno : 0);
		p = tw_mmap("file_map", NULL, pg, TW_RX, MAP_PRIVATE, exe, 0);
	} else {
		if (!strcmp(mode, "memfd")) {
			fd = memfd_create("held", MFD_CLOEXEC);
		} else {
			unlink(path);
			fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		}
		tw_step("open", "open", fd, fd < 0 ? errno : 0);
		if (fd < 0 || pwrite(fd, page, pg, 0) != (ssize_t)pg)
			return tw_done();
		p = tw_mmap("file_map", NULL, pg, PROT_READ, !strcmp(mode, "memfd") ? MAP_SHARED : MAP_PRIVATE,
			    fd, 0);
		(void)*(volatile unsigned char *)p;
	}
	if (p == MAP_FAILED)
		return tw_done();
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	memcpy(page, TW_CODE, sizeof(TW_CODE));
	if (!strcmp(mode, "mem")) {
		ssize_t n = pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)p);

		tw_step("mem_write", "pwrite", n, n < 0 ? errno : 0);
		if (n == (ssize_t)sizeof(TW_CODE))
			tw_run("mem_call", p);
		return tw_done();
	}
	ssize_t n = pwrite(fd, page, sizeof(TW_CODE), 0);

	tw_step("write", "pwrite", n, n < 0 ? errno : 0);
	if (!strcmp(mode, "filemap")) {
		unsigned char *q = tw_mmap("map_rx", NULL, pg, TW_RX, MAP_PRIVATE, fd, 0);

		if (q != MAP_FAILED)
			tw_run("map_call", q);
	} else if (tw_mprotect("make_rx", p, pg, TW_RX) == 0) {
		tw_run("rx_call", p);
	}
	if (strcmp(mode, "memfd"))
		unlink(path);
	return tw_done();
}
