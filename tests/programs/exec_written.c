/*
 * exec-written: code the program writes into a file (not into memory) that is
 * then mapped executable, or a program it writes that it then executes.
 * Each route runs in a child: pwrite into a named file (in $TMPDIR or /tmp)
 * and into a tmpfs file (/dev/shm), a writable shared mapping, vmsplice +
 * splice, copy_file_range; with a file argument, that file (code it did not
 * write: mov eax,7; ret) is mapped executable first and written afterwards;
 * last a copy of this program is exec'd (it prints RAN exec_copy_call).
 */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>

static const char *tmpdir(void)
{
	const char *dir = getenv("TMPDIR");

	return dir && *dir ? dir : "/tmp";
}

/* A fresh file in dir, open read-write; the caller unlinks it. */
static int fresh_file(const char *dir, char *name, size_t size)
{
	int fd;

	snprintf(name, size, "%s/tw-written-XXXXXX", dir);
	fd = mkstemp(name);
	return fd;
}

static void map_and_run(const char *label, int fd)
{
	char what[64];
	void *rx;

	snprintf(what, sizeof(what), "%s_rx_mmap", label);
	rx = tw_mmap(what, NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, 0);
	if (rx != MAP_FAILED) {
		snprintf(what, sizeof(what), "%s_call", label);
		tw_run(what, rx);
	}
}

static void route_pwrite(const char *label, const char *dir)
{
	char name[256];
	int fd = fresh_file(dir, name, sizeof(name));

	if (fd < 0)
		return;
	if (pwrite(fd, TW_CODE, sizeof(TW_CODE), 0) == (ssize_t)sizeof(TW_CODE))
		map_and_run(label, fd);
	unlink(name);
}

static void route_shared_mapping(void)
{
	char name[256];
	int fd = fresh_file(tmpdir(), name, sizeof(name));
	void *rw;

	if (fd < 0 || ftruncate(fd, (off_t)tw_page()) < 0)
		return;
	rw = mmap(NULL, tw_page(), TW_RW, MAP_SHARED, fd, 0);
	if (rw == MAP_FAILED)
		return;
	tw_put_code(rw);
	munmap(rw, tw_page());
	map_and_run("shared_mapping", fd);
	unlink(name);
}

static void route_splice(void)
{
	struct iovec iov = {.iov_base = (void *)TW_CODE, .iov_len = sizeof(TW_CODE)};
	char name[256];
	int fd = fresh_file(tmpdir(), name, sizeof(name)), pipefd[2];

	if (fd < 0 || pipe(pipefd) < 0)
		return;
	if (vmsplice(pipefd[1], &iov, 1, 0) == (ssize_t)sizeof(TW_CODE) &&
	    splice(pipefd[0], NULL, fd, NULL, sizeof(TW_CODE), 0) == (ssize_t)sizeof(TW_CODE))
		map_and_run("splice", fd);
	unlink(name);
}

static void route_copy_file_range(void)
{
	char src_name[256], dst_name[256];
	int src = fresh_file(tmpdir(), src_name, sizeof(src_name));
	int dst = fresh_file(tmpdir(), dst_name, sizeof(dst_name));
	loff_t in = 0;

	if (src < 0 || dst < 0 || pwrite(src, TW_CODE, sizeof(TW_CODE), 0) != (ssize_t)sizeof(TW_CODE))
		return;
	if (copy_file_range(src, &in, dst, NULL, sizeof(TW_CODE), 0) == (ssize_t)sizeof(TW_CODE))
		map_and_run("copy_file_range", dst);
	unlink(src_name);
	unlink(dst_name);
}

/* A file of code it did not write, mapped executable (shared), then written. */
static void route_written_later(const char *path)
{
	void *rx;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rw;

	if (fd < 0)
		return;
	rx = tw_mmap("later_rx_mmap", NULL, tw_page(), TW_RX, MAP_SHARED, fd, 0);
	if (rx == MAP_FAILED)
		return;
	rw = open(path, O_RDWR | O_CLOEXEC);
	tw_step("later_open", "open", rw, errno);
	if (rw >= 0 && pwrite(rw, TW_CODE, sizeof(TW_CODE), 0) == (ssize_t)sizeof(TW_CODE))
		tw_run("later_call", rx);
}

static void route_exec_copy(void)
{
	char name[256], buf[65536];
	int fd = fresh_file(tmpdir(), name, sizeof(name)), in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	pid_t pid;

	if (fd < 0 || in < 0)
		return;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			return;
	fchmod(fd, 0755);
	close(fd);
	pid = fork();
	if (pid == 0) {
		char *argv[] = {name, "--exec-copy", NULL};

		execv(name, argv);
		_exit(127);
	}
	tw_wait_child("exec_copy_run", pid);
	unlink(name);
}

int main(int argc, char **argv)
{
	struct {
		const char *label;
		int needs_file;
	} routes[] = {{"pwrite", 0}, {"tmpfs", 0}, {"shared_mapping", 0}, {"splice", 0},
		      {"copy_file_range", 0}, {"later", 1}, {"exec_copy", 0}};
	size_t i;

	tw_init();
	if (argc > 1 && strcmp(argv[1], "--exec-copy") == 0) {
		tw_emit("RAN exec_copy_call");
		return 0;
	}
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		char label[64];
		pid_t pid;

		if (routes[i].needs_file && argc < 2)
			continue;
		pid = fork();
		if (pid == 0) {
			const char *r = routes[i].label;

			if (!strcmp(r, "pwrite"))
				route_pwrite("pwrite", tmpdir());
			else if (!strcmp(r, "tmpfs"))
				route_pwrite("tmpfs", "/dev/shm");
			else if (!strcmp(r, "shared_mapping"))
				route_shared_mapping();
			else if (!strcmp(r, "splice"))
				route_splice();
			else if (!strcmp(r, "copy_file_range"))
				route_copy_file_range();
			else if (!strcmp(r, "later"))
				route_written_later(argv[1]);
			else
				route_exec_copy();
			_exit(0);
		}
		snprintf(label, sizeof(label), "%s_child", routes[i].label);
		tw_wait_child(label, pid);
	}
	return tw_done();
}
