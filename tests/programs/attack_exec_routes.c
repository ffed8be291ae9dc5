/*
 * Attack: code the program produced, reached through routes with no plain
 * write-then-mmap. Each route runs in a child (argv[1] picks one):
 *   seal      a memfd written, sealed (F_SEAL_WRITE | F_SEAL_SHRINK |
 *             F_SEAL_GROW: nobody can write it any more), then mapped R-X;
 *   execveat  a copy of this program written into a memfd and executed with
 *             execveat(fd, "", AT_EMPTY_PATH) (no path at all);
 *   binfmt    a copy of this program registered as a binfmt_misc interpreter
 *             (a private binfmt_misc instance, in a new user and mount
 *             namespace) for files ending in .twbin; an empty file x.twbin
 *             is executed, so the kernel runs the copy: no exec names it.
 * The copy prints RAN <route>_call when it finds itself run that way.
 * `STEP binfmt_mount mount rc=-1 errno=...` where binfmt_misc cannot be
 * mounted privately (kernels before 6.7).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common.h"

/* Copy /proc/self/exe into fd; 0 on success. */
static int copy_self(int fd)
{
	char buf[65536];
	int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (in < 0)
		return -1;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			return -1;
	close(in);
	return n == 0 ? 0 : -1;
}

static void route_seal(void)
{
	int fd = memfd_create("tw-sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC), rc;
	void *rx;

	tw_step("seal_memfd", "memfd_create", fd, errno);
	if (fd < 0 || write(fd, TW_CODE, sizeof(TW_CODE)) != (ssize_t)sizeof(TW_CODE) || ftruncate(fd, 4096) != 0)
		return;
	rc = fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	tw_step("seal_seals", "fcntl", rc, errno);
	if (rc != 0)
		return;
	rx = tw_mmap("seal_rx_mmap", NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, 0);
	if (rx != MAP_FAILED)
		tw_run("seal_call", rx);
}

static void route_execveat(void)
{
	int fd = memfd_create("tw-exec", MFD_CLOEXEC);
	char *argv[] = {"tw-exec", "--ran", "execveat_call", NULL};
	char *envp[] = {NULL};
	long rc;

	tw_step("execveat_memfd", "memfd_create", fd, errno);
	if (fd < 0 || copy_self(fd) != 0)
		return;
	rc = syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
	tw_step("execveat_exec", "execveat", rc, errno);
}

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void route_binfmt(void)
{
	char base[] = "/tmp/tw_binfmt_XXXXXX";
	char path[256], rule[512], interp[256], target[256];
	int fd, rc;

	if (!mkdtemp(base))
		return;
	rc = unshare(CLONE_NEWUSER | CLONE_NEWNS);
	tw_step("binfmt_unshare", "unshare", rc, errno);
	if (rc != 0)
		return;
	write_text("/proc/self/setgroups", "deny");
	write_text("/proc/self/uid_map", "0 0 1");
	write_text("/proc/self/gid_map", "0 0 1");
	snprintf(path, sizeof(path), "%s/binfmt", base);
	mkdir(path, 0700);
	rc = mount("binfmt_misc", path, "binfmt_misc", 0, NULL);
	tw_step("binfmt_mount", "mount", rc, errno);
	if (rc != 0)
		return;
	snprintf(interp, sizeof(interp), "%s/interp", base);
	fd = open(interp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (fd < 0 || copy_self(fd) != 0)
		return;
	close(fd);
	snprintf(target, sizeof(target), "%s/x.twbin", base);
	fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (fd < 0)
		return;
	close(fd);
	snprintf(path, sizeof(path), "%s/binfmt/register", base);
	snprintf(rule, sizeof(rule), ":twbin:E::twbin::%s:", interp);
	rc = write_text(path, rule);
	tw_step("binfmt_register", "write", rc, errno);
	if (rc != 0)
		return;
	{
		char *argv[] = {target, NULL};
		char *envp[] = {NULL};

		rc = execve(target, argv, envp);
		tw_step("binfmt_exec", "execve", rc, errno);
	}
}

int main(int argc, char **argv)
{
	const char *routes[] = {"seal", "execveat", "binfmt"};
	size_t len;

	tw_init();
	if (argc > 2 && strcmp(argv[1], "--ran") == 0) {
		tw_emit("RAN %s", argv[2]);
		return 0;
	}
	len = argc > 1 ? strlen(argv[1]) : 0;
	if (len > 6 && strcmp(argv[1] + len - 6, ".twbin") == 0) {
		/* Run by the kernel as the binfmt_misc interpreter of x.twbin. */
		tw_emit("RAN binfmt_call");
		return 0;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		char label[64];
		pid_t pid;

		if (argc > 1 && strcmp(argv[1], routes[i]) != 0)
			continue;
		pid = fork();
		if (pid == 0) {
			if (i == 0)
				route_seal();
			else if (i == 1)
				route_execveat();
			else
				route_binfmt();
			_exit(0);
		}
		snprintf(label, sizeof(label), "%s_child", routes[i]);
		tw_wait_child(label, pid);
	}
	return tw_done();
}
