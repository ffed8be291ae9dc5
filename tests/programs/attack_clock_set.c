/*
 * attack_clock_set METHOD core [wait]
 * attack_clock_set METHOD before FILE
 *
 * Attack: the wall clock against "changed since the start" (root,
 * CAP_SYS_TIME). A file counts as possibly written by the tree when its
 * inode change time is at or after the run's start (for `attach`, the
 * process's start): the stamp comes from CLOCK_REALTIME, which root may set.
 * The clock is set back BACK seconds, the file gets its bytes, and the
 * clock is set forward again by as much (the host's clock ends where it
 * would have been, a few milliseconds aside). METHOD names the call:
 *   settime        clock_settime(CLOCK_REALTIME)
 *   settimeofday   settimeofday
 *   adjtimex       adjtimex(ADJ_SETOFFSET)
 *   clock_adjtime  clock_adjtime(CLOCK_REALTIME, ADJ_SETOFFSET)
 *   i386_settime   i386 clock_settime (int $0x80, 32-bit timespec)
 *   i386_stime     i386 stime (whole seconds)
 *   i386_adjtimex  i386 adjtimex(ADJ_SETOFFSET) (32-bit struct timex)
 *
 * `core`: a child with code (and a marker) in an anonymous page dumps core
 * (core_pattern naming a file in the current directory, a fresh one under
 * /tmp) while the clock is back, so the kernel's write of the core file is
 * stamped before the run started; no process of the tree opens it. The
 * program then maps the core's page holding the code R-X and calls it. With
 * `wait` it says READY and waits for a line first (a tracer attaches), so
 * the clock is set during the attach.
 *
 * `before`: code is written into FILE (a page) and the descriptor closed
 * while the clock is back, before READY: nothing after the attach shows the
 * write, and its change time says it is older than the process. After the
 * line it maps FILE R-X and calls it.
 */
#include "common.h"

#include <dirent.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

#define BACK 20 /* seconds: more than the run has lasted */

#define I386_NR_STIME 25
#define I386_NR_ADJTIMEX 124
#define I386_NR_CLOCK_SETTIME 264

static const char MARKER[] = "TRAMPWATCH-CLOCK";

static long int80(long nr, long a, long b)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

/* A page below 4 GiB for i386 calls' structs. */
static int32_t *low_page(void)
{
	static int32_t *low;

	if (!low)
		low = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	return low == MAP_FAILED ? NULL : low;
}

/* Move CLOCK_REALTIME by `delta` seconds with `method`. Returns 0 or -errno. */
static long shift_clock(const char *method, long delta)
{
	struct timespec now;
	struct timex tx = {0};
	int32_t *low = low_page();

	clock_gettime(CLOCK_REALTIME, &now);
	now.tv_sec += delta;
	if (strcmp(method, "settime") == 0)
		return clock_settime(CLOCK_REALTIME, &now) ? -errno : 0;
	if (strcmp(method, "settimeofday") == 0) {
		struct timeval tv = {now.tv_sec, now.tv_nsec / 1000};

		return settimeofday(&tv, NULL) ? -errno : 0;
	}
	tx.modes = ADJ_SETOFFSET | ADJ_NANO;
	tx.time.tv_sec = delta;
	if (strcmp(method, "adjtimex") == 0)
		return adjtimex(&tx) < 0 ? -errno : 0;
	if (strcmp(method, "clock_adjtime") == 0)
		return syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx) < 0 ? -errno : 0;
	if (!low)
		return -ENOMEM;
	memset(low, 0, tw_page());
	if (strcmp(method, "i386_settime") == 0) {
		low[0] = (int32_t)now.tv_sec;
		low[1] = (int32_t)now.tv_nsec;
		return int80(I386_NR_CLOCK_SETTIME, CLOCK_REALTIME, (long)(uintptr_t)low);
	}
	if (strcmp(method, "i386_stime") == 0) {
		/* Whole seconds: set it just after one begins, losing little. */
		do
			clock_gettime(CLOCK_REALTIME, &now);
		while (now.tv_nsec > 1000000);
		low[0] = (int32_t)(now.tv_sec + delta);
		return int80(I386_NR_STIME, (long)(uintptr_t)low, 0);
	}
	if (strcmp(method, "i386_adjtimex") == 0) {
		/* struct old_timex32: modes, 8 more words, then time {sec, usec}. */
		low[0] = ADJ_SETOFFSET | ADJ_NANO;
		low[9] = (int32_t)delta;
		long ret = int80(I386_NR_ADJTIMEX, (long)(uintptr_t)low, 0);

		return ret < 0 ? ret : 0;
	}
	return -EINVAL;
}

static int clock_back(const char *method)
{
	long rc = shift_clock(method, -BACK);

	tw_step("clock_back", method, rc < 0 ? -1 : 0, rc < 0 ? (int)-rc : 0);
	return rc < 0 ? -1 : 0;
}

static void clock_forward(const char *method)
{
	long rc = shift_clock(method, BACK);

	tw_step("clock_forward", method, rc < 0 ? -1 : 0, rc < 0 ? (int)-rc : 0);
}

/* The offset of the core's page holding the code and marker, or -1. */
static off_t find_code(int fd)
{
	size_t pg = tw_page();
	char page[64];
	struct stat st;
	off_t off;

	if (fstat(fd, &st) != 0)
		return -1;
	for (off = 0; off + (off_t)pg <= st.st_size; off += (off_t)pg)
		if (pread(fd, page, sizeof(page), off) == (ssize_t)sizeof(page) &&
		    memcmp(page, TW_CODE, sizeof(TW_CODE)) == 0 && memcmp(page + 16, MARKER, sizeof(MARKER)) == 0)
			return off;
	return -1;
}

static int core_route(const char *method, int wait)
{
	char dir[] = "/tmp/tw_clock_XXXXXX";
	char path[512] = "", line[64];
	struct dirent *d;
	DIR *dp;
	off_t found;
	pid_t pid;
	void *p;
	int fd = -1;

	if (!mkdtemp(dir) || chdir(dir) != 0)
		return 1;
	if (wait) {
		tw_emit("READY %d", (int)getpid());
		if (!fgets(line, sizeof(line), stdin))
			line[0] = 0;
	}
	if (clock_back(method) == 0) {
		pid = fork();
		if (pid == 0)
			tw_dump_code_core(MARKER, sizeof(MARKER));
		tw_wait_child("dumper", pid);
		clock_forward(method);
	}
	dp = opendir(dir);
	while (dp && (d = readdir(dp)) != NULL)
		if (strncmp(d->d_name, "core", 4) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			break;
		}
	if (dp)
		closedir(dp);
	tw_step("core_file", "find", fd < 0 ? -1 : 0, fd < 0 ? ENOENT : 0);
	if (fd >= 0 && (found = find_code(fd)) >= 0) {
		p = tw_mmap("core_rx_mmap", NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, found);
		if (p != MAP_FAILED)
			tw_run("core_call", p);
	}
	if (fd >= 0)
		close(fd);
	if (path[0])
		unlink(path);
	if (chdir("/") == 0)
		rmdir(dir);
	return tw_done();
}

static int before_route(const char *method, const char *file)
{
	size_t pg = tw_page();
	unsigned char *code = calloc(1, pg);
	char line[64];
	void *p;
	int fd;

	if (code == NULL)
		return 1;
	tw_put_code(code);
	if (clock_back(method) == 0) {
		fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		tw_step("file_write", "write", fd >= 0 && write(fd, code, pg) == (ssize_t)pg ? 0 : -1, errno);
		if (fd >= 0)
			close(fd);
		clock_forward(method);
	}
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	p = tw_mmap("file_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, fd, 0);
	if (p != MAP_FAILED)
		tw_run("file_call", p);
	return tw_done();
}

int main(int argc, char **argv)
{
	tw_init();
	if (argc >= 3 && strcmp(argv[2], "core") == 0)
		return core_route(argv[1], argc >= 4 && strcmp(argv[3], "wait") == 0);
	if (argc == 4 && strcmp(argv[2], "before") == 0)
		return before_route(argv[1], argv[3]);
	fprintf(stderr, "usage: attack_clock_set METHOD core [wait] | METHOD before FILE\n");
	return 2;
}
