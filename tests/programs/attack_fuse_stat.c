/*
 * Attack: the tracer's own look at a judged descriptor waits for a FUSE
 * server the tracer holds.
 *
 * In a private mount namespace the program mounts a FUSE filesystem served
 * by its own thread S (which shares its descriptor table): one regular file
 * "f". OPEN is answered ENOSYS (the kernel then opens its files with no
 * request) and LOOKUP with long validity, so after a first read-only open
 * an open of f asks the server nothing. Main then opens f O_RDWR: a tracer
 * holds S (a sibling) until the open's result is judged, and must not ask
 * the filesystem anything S would have to answer (statfs, a getattr of
 * expired attributes: with ATTR=0 attributes expire at once) while S is
 * stopped. Natively the open succeeds and main writes through it
 * (STEP rw_open, STEP rw_write).
 * With "mmap": attributes expire at once; a forked child opens f, main
 * opens a FIFO for writing (held: S stopped until a reader comes), and
 * the child, 300 ms later, maps f R-X (STEP child_rx_mmap) and then opens
 * the FIFO for reading. A tracer must not ask the filesystem anything at
 * the mmap's entry (an fstat of expired attributes) while S is held.
 * With "exitmap": attributes expire at once and main maps f R-X itself; a
 * tracer that may undo the mapping at the call's exit holds S meanwhile and
 * must not ask the filesystem anything then (a stat of the mapped object).
 * Needs root (mount namespaces, FUSE).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include "tw_fuse.h"

#define FILE_NODE 2

static uint64_t attr_valid = 3600;

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	attr->ino = node;
	attr->blksize = 4096;
	attr->mode = node == FILE_NODE ? S_IFREG | 0666 : S_IFDIR | 0755;
	attr->nlink = node == FILE_NODE ? 1 : 2;
	attr->size = node == FILE_NODE ? 4096 : 0;
}

/* The server's part (thread S): a file "f", attributes valid attr_valid s,
 * STATFS and WRITE answered; OPEN, FLUSH, ...: ENOSYS, never asked again. */
static int handle(struct fuse_in_header *in, void *arg)
{
	switch (in->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out entry = {0};

		if (in->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, "f") != 0) {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
			break;
		}
		entry.nodeid = FILE_NODE;
		entry.entry_valid = 3600;
		entry.attr_valid = attr_valid;
		fill_attr(&entry.attr, FILE_NODE);
		tw_fuse_reply(in->unique, 0, &entry, sizeof(entry));
		break;
	}
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, attr_valid);
		break;
	case FUSE_STATFS: {
		struct fuse_statfs_out out = {0};

		out.st.bsize = out.st.frsize = 4096;
		out.st.namelen = 255;
		tw_fuse_reply(in->unique, 0, &out, sizeof(out));
		break;
	}
	case FUSE_WRITE: {
		struct fuse_write_in *write_in = arg;
		struct fuse_write_out out = {.size = write_in->size};

		tw_fuse_reply(in->unique, 0, &out, sizeof(out));
		break;
	}
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

/* A child maps the file R-X while main waits, held, in a FIFO's open. */
static void map_while_held(const char *path)
{
	char fifo[] = "/tmp/tw_fuse_stat_fifo_XXXXXX";
	int go[2], fd;
	pid_t child;
	char byte;

	if (!mkdtemp(fifo) || pipe(go) != 0)
		return;
	strcat(fifo, "/f");
	if (mkfifo(fifo, 0600) != 0)
		return;
	child = fork();
	if (child == 0) {
		void *p;

		fd = open(path, O_RDONLY);
		if (read(go[0], &byte, 1) != 1)
			_exit(1);
		usleep(300000); /* main waits in the FIFO's open, S held */
		p = mmap(NULL, 4096, TW_RX, MAP_PRIVATE, fd, 0);
		tw_step_addr("child_rx_mmap", "mmap", p, MAP_FAILED, errno);
		close(open(fifo, O_RDONLY | O_NONBLOCK));
		_exit(0);
	}
	if (write(go[1], "g", 1) != 1)
		return;
	fd = open(fifo, O_WRONLY);
	tw_step("fifo_open", "open", fd, errno);
	if (fd >= 0)
		close(fd);
	tw_wait_child("mapper", child);
	unlink(fifo);
	*strrchr(fifo, '/') = 0;
	rmdir(fifo);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tw_fuse_stat_XXXXXX";
	char path[256];
	pthread_t server;
	int fd;

	tw_init();
	if (argc > 1 && (strcmp(argv[1], "ATTR=0") == 0 || strcmp(argv[1], "mmap") == 0 ||
			 strcmp(argv[1], "exitmap") == 0))
		attr_valid = 0;
	if (!mkdtemp(dir))
		return 1;
	if (tw_fuse_mount(dir) != 0)
		return tw_done();
	pthread_create(&server, NULL, serve, NULL);
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDONLY);
	tw_step("ro_open", "open", fd, errno);
	if (fd >= 0)
		close(fd);
	if (argc > 1 && strcmp(argv[1], "mmap") == 0)
		map_while_held(path);
	if (argc > 1 && strcmp(argv[1], "exitmap") == 0) {
		/* Main maps f R-X itself: S shares the descriptor table, so a tracer
		 * that may undo the mapping at the call's exit holds S meanwhile. */
		void *p;

		fd = open(path, O_RDONLY);
		p = mmap(NULL, 4096, TW_RX, MAP_PRIVATE, fd, 0);
		tw_step_addr("rx_mmap", "mmap", p, MAP_FAILED, errno);
		if (p != MAP_FAILED)
			munmap(p, 4096); /* else the mount stays busy and S never ends */
		if (fd >= 0)
			close(fd);
	}
	fd = open(path, O_RDWR);
	tw_step("rw_open", "open", fd, errno);
	if (fd >= 0) {
		tw_step("rw_write", "write", write(fd, "x", 1), errno);
		close(fd);
	}
	umount2(dir, MNT_DETACH);
	close(tw_fuse_fd);
	pthread_join(server, NULL);
	rmdir(dir);
	return tw_done();
}
