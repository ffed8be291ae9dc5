/*
 * exec-unlinked: code with no file on disk made executable.
 * 1. write() code into a memfd, map it read+execute (private), run it.
 * 2. copy /bin/true into a memfd, map it read+execute, and fexecve it in a child.
 */
#include "common.h"

#include <fcntl.h>

static void run_code_memfd(void)
{
	size_t pg = tw_page();
	ssize_t n;
	void *rx;
	int fd;

	fd = memfd_create("trampwatch-code", MFD_CLOEXEC);
	tw_step("code_memfd_create", "memfd_create", fd, errno);
	if (fd < 0)
		return;
	n = pwrite(fd, TW_CODE, sizeof(TW_CODE), 0);
	tw_step("code_pwrite", "pwrite64", n, errno);
	if (n == (ssize_t)sizeof(TW_CODE)) {
		rx = tw_mmap("code_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, fd, 0);
		if (rx != MAP_FAILED) {
			tw_run("memfd_call", rx);
			munmap(rx, pg);
		}
	}
	close(fd);
}

/* Copy src into fd; returns the bytes copied, or -1 with errno set. */
static long copy_file(const char *src, int fd)
{
	char buf[65536];
	long total = 0;
	ssize_t n;
	int in = open(src, O_RDONLY | O_CLOEXEC);

	if (in < 0)
		return -1;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(fd, buf, (size_t)n) != n) {
			close(in);
			return -1;
		}
		total += n;
	}
	close(in);
	return n < 0 ? -1 : total;
}

/* fexecve in a child; a close-on-exec pipe tells the parent whether the exec happened. */
static void fexecve_memfd(int fd)
{
	char *argv[] = {"true", NULL};
	char *envp[] = {NULL};
	int report[2], err = 0;
	pid_t pid;

	if (pipe2(report, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		fexecve(fd, argv, envp);
		err = errno;
		if (write(report[1], &err, sizeof(err)) < 0)
			_exit(126);
		_exit(127);
	}
	close(report[1]);
	if (pid < 0) {
		tw_step("true_fork", "fork", -1, errno);
		close(report[0]);
		return;
	}
	if (read(report[0], &err, sizeof(err)) != (ssize_t)sizeof(err))
		err = 0;
	close(report[0]);
	tw_step("true_fexecve", "execveat", err ? -1 : 0, err);
	tw_wait_child("true_child", pid);
}

static void exec_memfd(void)
{
	long size;
	void *rx;
	int fd;

	fd = memfd_create("trampwatch-true", MFD_CLOEXEC);
	tw_step("true_memfd_create", "memfd_create", fd, errno);
	if (fd < 0)
		return;
	size = copy_file("/bin/true", fd);
	tw_step("true_copy", "write", size, errno);
	if (size > 0) {
		rx = tw_mmap("true_rx_mmap", NULL, (size_t)size, TW_RX, MAP_PRIVATE, fd, 0);
		if (rx != MAP_FAILED)
			munmap(rx, (size_t)size);
		fexecve_memfd(fd);
	}
	close(fd);
}

int main(void)
{
	tw_init();
	run_code_memfd();
	exec_memfd();
	return tw_done();
}
