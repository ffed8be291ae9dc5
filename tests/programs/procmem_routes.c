/*
 * foreign-write by every route to a writable /proc/PID/mem descriptor: path
 * spellings, a symlink, a path over 256 bytes, an O_PATH descriptor reopened
 * through /proc/self/fd/N, creat, openat2, an i386 open through int $0x80, a
 * procfs mounted elsewhere (new mount namespace, fsopen/fsmount, open_tree), a mem file bind-mounted over a plain file,
 * chroot, a path in memfd_secret memory the tracer cannot read, a path
 * another thread rewrites between check and use, and a sibling thread that
 * uses the new descriptor before anyone can judge it.
 *
 * Each route runs in its own child (a patched text page stays in the child):
 * it opens a mem descriptor for writing, pwrites TW_CODE over
 * tw_patch_target and calls it (RAN <route>). Natively every route runs.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>

TW_DEFINE_PATCH_TARGET;

#define PROC_MAGIC 0x9fa0

/* Write the code through fd and run it; returns 1 when it ran. */
static int patch_and_run(const char *label, int fd)
{
	char ran[64];
	ssize_t n = pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target);

	if (n != (ssize_t)sizeof(TW_CODE))
		return 0;
	snprintf(ran, sizeof(ran), "%s_call", label);
	tw_run(ran, (const void *)tw_patch_target);
	return 1;
}

static int open_plain(const char *path)
{
	return open(path, O_RDWR | O_CLOEXEC);
}

static int route_dot(void) { return open_plain("/proc/self/./mem"); }
static int route_slashes(void) { return open_plain("//proc//self///mem"); }
static int route_dotdot(void) { return open_plain("/proc/self/../self/mem"); }
static int route_dev_fd(void) { return open_plain("/dev/fd/../mem"); }
static int route_thread_self(void) { return open_plain("/proc/thread-self/mem"); }

static int route_task(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%ld/mem", (long)syscall(SYS_gettid));
	return open_plain(path);
}

static int route_symlink(void)
{
	char dir[] = "/tmp/tw-procmem-XXXXXX", link[64];
	int fd;

	if (!mkdtemp(dir))
		return -1;
	snprintf(link, sizeof(link), "%s/m", dir);
	if (symlink("/proc/self/mem", link) < 0)
		return -1;
	fd = open_plain(link);
	unlink(link);
	rmdir(dir);
	return fd;
}

static int route_long_path(void)
{
	char path[600] = "/proc/self";
	int i;

	for (i = 0; i < 200; i++)
		strcat(path, "/.");
	strcat(path, "/mem");
	return open_plain(path);
}

static int route_opath_reopen(void)
{
	char path[64];
	int opath = open("/proc/self/mem", O_PATH | O_CLOEXEC);

	if (opath < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", opath);
	return open_plain(path);
}

static int route_creat(void) { return creat("/proc/self/mem", 0600); }

static int route_openat(void)
{
	int dir = open("/proc/self", O_DIRECTORY | O_CLOEXEC);

	return dir < 0 ? -1 : openat(dir, "mem", O_RDWR | O_CLOEXEC);
}

static int route_openat2(void)
{
	struct open_how how = {.flags = O_RDWR | O_CLOEXEC};

	return (int)syscall(SYS_openat2, AT_FDCWD, "/proc/self/mem", &how, sizeof(how));
}

/* i386 open (5) through int $0x80 from this 64-bit program; the path lives low. */
static int route_int80(void)
{
	char *low = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	long ret;

	if (low == MAP_FAILED)
		return -1;
	strcpy(low, "/proc/self/mem");
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(5L), "b"(low), "c"((long)O_RDWR), "d"(0L)
			 : "memory", "r8", "r9", "r10", "r11");
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return (int)ret;
}

static int route_new_mount_ns(void)
{
	char dir[] = "/tmp/tw-proc-XXXXXX", path[64];
	int fd;

	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	if (!mkdtemp(dir) || mount("proc", dir, "proc", 0, NULL) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/self/mem", dir);
	fd = open_plain(path);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return fd;
}

/* /proc/self/mem bind-mounted over a plain file: the descriptor's link names
 * the plain file, not a file called mem. */
static int route_bind_mount(void)
{
	char path[] = "/tmp/tw-mem-XXXXXX";
	int fd, tmp;

	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	tmp = mkstemp(path);
	if (tmp < 0)
		return -1;
	close(tmp);
	if (mount("/proc/self/mem", path, NULL, MS_BIND, NULL) < 0) {
		unlink(path);
		return -1;
	}
	fd = open_plain(path);
	umount2(path, MNT_DETACH);
	unlink(path);
	return fd;
}

static int route_fsmount(void)
{
	int fs = (int)syscall(SYS_fsopen, "proc", 0), mnt;

	if (fs < 0 || syscall(SYS_fsconfig, fs, 6 /* FSCONFIG_CMD_CREATE */, NULL, NULL, 0) < 0)
		return -1;
	mnt = (int)syscall(SYS_fsmount, fs, 0, 0);
	return mnt < 0 ? -1 : openat(mnt, "self/mem", O_RDWR | O_CLOEXEC);
}

static int route_open_tree(void)
{
	int tree = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc", 1 /* OPEN_TREE_CLONE */);

	return tree < 0 ? -1 : openat(tree, "self/mem", O_RDWR | O_CLOEXEC);
}

static int route_chroot(void)
{
	return chroot("/proc") < 0 ? -1 : open_plain("/self/mem");
}

/* The path lives in memfd_secret memory, which /proc/PID/mem cannot read. */
static int route_secret_path(void)
{
	int secret = (int)syscall(447 /* memfd_secret */, 0);
	char *p;

	if (secret < 0 || ftruncate(secret, (off_t)tw_page()) < 0)
		return -1;
	p = mmap(NULL, tw_page(), TW_RW, MAP_SHARED, secret, 0);
	if (p == MAP_FAILED)
		return -1;
	strcpy(p, "/proc/self/mem");
	return open_plain(p);
}

/* --- a path another thread rewrites between any check and the kernel's use --- */

static char flip_path[64];
static char harmless[64];
static volatile int flipping = 1, flipper_runs;

static void *flipper(void *arg)
{
	(void)arg;
	flipper_runs = 1;
	while (flipping) {
		strcpy(flip_path, harmless);
		strcpy(flip_path, "/proc/self/mem");
	}
	return NULL;
}

static int is_procfs(int fd)
{
	struct statfs fs;

	return fstatfs(fd, &fs) == 0 && fs.f_type == PROC_MAGIC;
}

static int deadline_passed(const struct timespec *until)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > until->tv_sec || (now.tv_sec == until->tv_sec && now.tv_nsec >= until->tv_nsec);
}

static int route_rewritten_path(void)
{
	int tmp, i, fd = -1, err = 0;
	struct timespec until;
	pthread_t t;

	strcpy(harmless, "/tmp/tw-harmless-XXXXXX");
	tmp = mkstemp(harmless);
	if (tmp < 0)
		return -1;
	close(tmp);
	strcpy(flip_path, harmless);
	pthread_create(&t, NULL, flipper, NULL);
	while (!flipper_runs)
		sched_yield();
	/* 3000 tries, and at least 1 s of them: on a busy machine the flipper
	 * may get no CPU during the first ones. */
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 1;
	for (i = 0; i < 3000 || !deadline_passed(&until); i++) {
		fd = open(flip_path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && is_procfs(fd))
			break;
		if (fd < 0)
			err = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	flipping = 0;
	pthread_join(t, NULL);
	unlink(harmless);
	errno = err ? err : ENOENT;
	return fd;
}

/* --- a sibling thread that uses the new descriptor before it is judged --- */

static volatile int sibling_fd = -1;
static volatile int racing = 1;

static void *sibling(void *arg)
{
	(void)arg;
	while (racing) {
		if (pwrite(sibling_fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) ==
		    (ssize_t)sizeof(TW_CODE)) {
			tw_run("sibling_race_call", (const void *)tw_patch_target);
			_exit(0);
		}
	}
	return NULL;
}

static int route_sibling_race(void)
{
	int probe = dup(0), i, err = 0;
	pthread_t t;

	if (probe < 0)
		return -1;
	close(probe);
	sibling_fd = probe; /* the number the next open gets */
	pthread_create(&t, NULL, sibling, NULL);
	for (i = 0; i < 200; i++) {
		int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);

		if (fd < 0) {
			err = errno;
			continue;
		}
		usleep(20000); /* the sibling writes through it meanwhile */
		close(fd);
	}
	racing = 0;
	pthread_join(t, NULL);
	errno = err;
	return -1;
}

struct route {
	const char *label;
	int (*open)(void);
};

static const struct route ROUTES[] = {
	{"dot", route_dot},
	{"slashes", route_slashes},
	{"dotdot", route_dotdot},
	{"dev_fd", route_dev_fd},
	{"thread_self", route_thread_self},
	{"task", route_task},
	{"symlink", route_symlink},
	{"long_path", route_long_path},
	{"opath_reopen", route_opath_reopen},
	{"creat", route_creat},
	{"openat", route_openat},
	{"openat2", route_openat2},
	{"int80", route_int80},
	{"mount_ns", route_new_mount_ns},
	{"bind_mount", route_bind_mount},
	{"fsmount", route_fsmount},
	{"open_tree", route_open_tree},
	{"chroot", route_chroot},
	{"secret_path", route_secret_path},
	{"rewritten_path", route_rewritten_path},
	{"sibling_race", route_sibling_race},
};

int main(int argc, char **argv)
{
	size_t i;

	tw_init();
	for (i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++) {
		const struct route *r = &ROUTES[i];
		char label[64];
		pid_t pid;

		if (argc > 1 && strcmp(argv[1], r->label) != 0)
			continue;
		pid = fork();
		if (pid == 0) {
			int fd = r->open();

			snprintf(label, sizeof(label), "%s_open", r->label);
			tw_step(label, "open", fd, errno);
			if (fd >= 0)
				patch_and_run(r->label, fd);
			_exit(0);
		}
		snprintf(label, sizeof(label), "%s_child", r->label);
		tw_wait_child(label, pid);
	}
	return tw_done();
}
