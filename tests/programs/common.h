/*
 * Shared helpers for trampwatch's test programs.
 *
 * Every program speaks one line protocol on stdout (see README.md):
 *   STEP <label> <syscall> rc=<signed decimal | 0x-hex address> errno=<NAME | 0>
 *   RAN <label>                      code the program placed in memory ran (returned 42)
 *   MAPS <label> <start>-<end> <perms> <path | ->   a /proc/self/maps line
 *   CHILD <label> exit=<n> | signal=<NAME>           how a waited-for child ended
 *   COUNT <n>                        the program's one counted result
 *   DONE                             the program reached its end
 * Each line is written with a single write(2) so lines from several threads or
 * processes sharing the pipe never interleave mid-line.
 */
#ifndef TRAMPWATCH_TEST_COMMON_H
#define TRAMPWATCH_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBC__) && !defined(__USE_GNU)
#error "define _GNU_SOURCE before any header, or include common.h first: tw_errname needs strerrorname_np"
#endif

/* mov eax, 42 ; ret -- the one code blob every program writes and runs. */
static const unsigned char TW_CODE[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};
#define TW_CODE_RESULT 42

#define TW_RWX (PROT_READ | PROT_WRITE | PROT_EXEC)
#define TW_RW (PROT_READ | PROT_WRITE)
#define TW_RX (PROT_READ | PROT_EXEC)

static inline void tw_emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline void tw_emit(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: atomic on a pipe, so concurrent writers stay line-clean. */
	if (write(STDOUT_FILENO, line, (size_t)n) != n)
		_exit(99);
}

/* Called first by every main(): stdout unbuffered so nothing is lost at a crash or exec. */
static inline void tw_init(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
}

static inline const char *tw_errname(int err)
{
	static __thread char unknown[16];
	const char *name;

	if (err == 0)
		return "0";
	name = strerrorname_np(err);
	if (name)
		return name;
	snprintf(unknown, sizeof(unknown), "E%d", err);
	return unknown;
}

static inline const char *tw_signame(int sig)
{
	static __thread char unknown[16];
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev) {
		snprintf(unknown, sizeof(unknown), "SIG%s", abbrev);
		return unknown;
	}
	snprintf(unknown, sizeof(unknown), "SIG%d", sig);
	return unknown;
}

/* A call returning an integer: rc is printed as signed decimal. */
static inline void tw_step(const char *label, const char *syscall, long rc, int err)
{
	tw_emit("STEP %s %s rc=%ld errno=%s", label, syscall, rc, tw_errname(rc < 0 ? err : 0));
}

/* A call returning an address; `failed` is the call's own failure value. */
static inline void tw_step_addr(const char *label, const char *syscall, const void *addr,
				const void *failed, int err)
{
	if (addr == failed)
		tw_emit("STEP %s %s rc=-1 errno=%s", label, syscall, tw_errname(err));
	else
		tw_emit("STEP %s %s rc=0x%lx errno=0", label, syscall, (unsigned long)(uintptr_t)addr);
}

/* A raw syscall result (-errno on failure), normalised to rc=-1 errno=NAME. */
static inline long tw_step_raw(const char *label, const char *syscall, long raw)
{
	if (raw < 0 && raw > -4096) {
		tw_step(label, syscall, -1, (int)-raw);
		return -1;
	}
	tw_step(label, syscall, raw, 0);
	return raw;
}

static inline size_t tw_page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static inline void *tw_page_of(const void *addr)
{
	return (void *)((uintptr_t)addr & ~((uintptr_t)tw_page() - 1));
}

static inline void *tw_mmap(const char *label, void *addr, size_t len, int prot, int flags,
			    int fd, off_t off)
{
	void *p = mmap(addr, len, prot, flags, fd, off);

	tw_step_addr(label, "mmap", p, MAP_FAILED, errno);
	return p;
}

static inline int tw_mprotect(const char *label, void *addr, size_t len, int prot)
{
	int rc = mprotect(addr, len, prot);

	tw_step(label, "mprotect", rc, errno);
	return rc;
}

static inline int tw_munmap(const char *label, void *addr, size_t len)
{
	int rc = munmap(addr, len);

	tw_step(label, "munmap", rc, errno);
	return rc;
}

static inline void tw_put_code(void *dst)
{
	memcpy(dst, TW_CODE, sizeof(TW_CODE));
}

/*
 * For a child made to dump core: the code, and `marker` (`len` bytes) 16
 * bytes after it, written into an anonymous page; no core size limit;
 * then SIGABRT. Never returns (exits 1 when it cannot prepare, 2 when the
 * signal did not end it).
 */
static inline void __attribute__((noreturn)) tw_dump_code_core(const char *marker, size_t len)
{
	size_t pg = tw_page();
	struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
	char *page = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED || setrlimit(RLIMIT_CORE, &unlimited) != 0)
		_exit(1);
	tw_put_code(page);
	memcpy(page + 16, marker, len);
	signal(SIGABRT, SIG_DFL);
	raise(SIGABRT);
	_exit(2);
}

/*
 * Two pages of `path` mapped private read+write ("file_map"), the code
 * written into the first (the kernel makes it the process's own copy),
 * the second only read, both made read-only ("make_ro"): a page whose
 * history is written though nothing about it shows that now. Returns the
 * mapping (MAP_FAILED when it fails); the descriptor stays open.
 */
static inline unsigned char *tw_written_copy(const char *path)
{
	size_t pg = tw_page();
	unsigned char *p;

	p = tw_mmap("file_map", NULL, 2 * pg, TW_RW, MAP_PRIVATE, open(path, O_RDONLY | O_CLOEXEC), 0);
	if (p == MAP_FAILED)
		return p;
	tw_put_code(p);
	(void)*(volatile unsigned char *)(p + pg);
	tw_mprotect("make_ro", p, 2 * pg, PROT_READ);
	return p;
}

/*
 * Call the code at `entry`; print RAN when it returns 42. Any other result
 * means the program is broken, not the kernel: say so and stop with 3.
 */
static inline void tw_run(const char *label, const void *entry)
{
	int (*fn)(void) = (int (*)(void))(uintptr_t)entry;
	int got;

	/*
	 * The compiler cannot tell that calling entry reads the bytes copied
	 * there, and drops the copy into a local (stack) buffer as a dead store;
	 * an asm that takes the pointer and clobbers memory keeps it.
	 */
	__asm__ volatile("" : : "r"(entry) : "memory");
	got = fn();

	if (got != TW_CODE_RESULT) {
		tw_emit("BADRET %s %d", label, got);
		_exit(3);
	}
	tw_emit("RAN %s", label);
}

struct tw_map {
	unsigned long start, end;
	char perms[8];
	char path[256];
};

/* Find the /proc/self/maps line holding addr. Returns 0, or -1 if there is none. */
static inline int tw_find_map(const void *addr, struct tw_map *out)
{
	unsigned long a = (unsigned long)(uintptr_t)addr;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	int found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		struct tw_map m = {0};
		int n = sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &m.start, &m.end, m.perms, m.path);

		if (n < 3 || a < m.start || a >= m.end)
			continue;
		if (n < 4)
			strcpy(m.path, "-");
		*out = m;
		found = 0;
		break;
	}
	fclose(f);
	return found;
}

/* Print the MAPS line for addr. Returns 1 if that memory is executable, 0 if not, -1 if unmapped. */
static inline int tw_show_map(const char *label, const void *addr)
{
	struct tw_map m;

	if (tw_find_map(addr, &m) < 0) {
		tw_emit("MAPS %s unmapped", label);
		return -1;
	}
	tw_emit("MAPS %s %lx-%lx %s %s", label, m.start, m.end, m.perms, m.path);
	return m.perms[2] == 'x';
}

/* Print how a child ended, from its wait status. Returns its exit code, or 128+signal. */
static inline int tw_report_status(const char *label, int status)
{
	if (WIFSIGNALED(status)) {
		tw_emit("CHILD %s signal=%s", label, tw_signame(WTERMSIG(status)));
		return 128 + WTERMSIG(status);
	}
	tw_emit("CHILD %s exit=%d", label, WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

/* Wait for pid and print how it ended. Returns its exit code, 128+signal, or -1. */
static inline int tw_wait_child(const char *label, pid_t pid)
{
	int status = 0;

	if (waitpid(pid, &status, 0) < 0) {
		tw_step(label, "waitpid", -1, errno);
		return -1;
	}
	return tw_report_status(label, status);
}

/* Read a positive count from argv, or stop with usage exit 2. */
static inline long tw_count_arg(int argc, char **argv, int index, const char *usage)
{
	char *end = NULL;
	long n;

	if (argc <= index) {
		fprintf(stderr, "usage: %s %s\n", argv[0], usage);
		exit(2);
	}
	n = strtol(argv[index], &end, 10);
	if (!end || *end || n < 0) {
		fprintf(stderr, "%s: not a count: '%s'\n", argv[0], argv[index]);
		exit(2);
	}
	return n;
}

/*
 * With `wait` as the program's last argument, wait for a line on stdin (EOF
 * counts): the process stays alive, say for a monitor to read its /proc.
 */
static inline void tw_wait_if_asked(int argc, char **argv)
{
	char line[64];

	if (argc >= 2 && strcmp(argv[argc - 1], "wait") == 0 && !fgets(line, sizeof(line), stdin))
		line[0] = 0;
}

static inline int tw_done(void)
{
	tw_emit("DONE");
	return 0;
}

/*
 * A 16-byte function in the program's own read+execute text that returns 7.
 * Programs that overwrite their own text (through /proc/self/mem or ptrace)
 * put TW_CODE over it; calling it afterwards returns 42.
 */
#define TW_DEFINE_PATCH_TARGET                                              \
	__asm__(".text\n"                                                   \
		".globl tw_patch_target\n"                                  \
		".type tw_patch_target, @function\n"                        \
		".balign 16\n"                                              \
		"tw_patch_target:\n"                                        \
		"  mov $7, %eax\n"                                          \
		"  ret\n"                                                   \
		"  .fill 10, 1, 0xcc\n"                                     \
		".size tw_patch_target, 16\n");                             \
	int tw_patch_target(void)

/*
 * Copy the file `from` to `path` (created mode 0755, or truncated): a
 * program the run writes. 0 on success, -1 on any failure.
 */
static inline int tw_copy_file(const char *from, const char *path)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	ssize_t n = -1;

	if (in < 0 || out < 0)
		return -1;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return -1;
	close(in);
	close(out);
	return n == 0 ? 0 : -1;
}

/* Whether descriptor `fd` of process `pid` names a /proc mem file. */
static inline int tw_names_mem(pid_t pid, int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(path, link, sizeof(link) - 1);
	return n > 4 && memcmp(link + n - 4, "/mem", 4) == 0;
}

/* Spin on `fd` of `pid` for at most `seconds`; 1 once it names a mem file. */
static inline int tw_wait_mem(pid_t pid, int fd, int seconds)
{
	time_t end = time(NULL) + seconds;

	while (time(NULL) < end)
		if (tw_names_mem(pid, fd))
			return 1;
	return 0;
}

#endif
