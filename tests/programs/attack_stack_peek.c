/*
 * attack_stack_peek [block|scratch|ino0]: memory the tracer cannot read without asking
 * the program.
 *
 * In a mount namespace of its own the program serves a FUSE file "f" from
 * a thread that never answers a READ (root). A page of f is mapped private
 * read-write and never touched; the stack pointer is moved into it for one
 * raw mprotect that makes written code R-X (a W^X event: the syscall
 * instruction touches no stack). A tracer that samples the caller's stack
 * to name the call's caller reads that page through /proc/PID/mem: the
 * fault waits for the server, for ever (SIGKILL included: a page cache
 * fault is not interruptible). Natively the page is never read: the
 * mprotect succeeds and the code runs.
 * `block`: the page (below 4 GiB) holds the argument block of an i386
 * old_mmap (int $0x80) of anonymous RWX memory; the server answers the
 * READ only when the program's own thread asks (the kernel reading the
 * block), never another process (a tracer peeking at it). The code is
 * written into the mapping and called when it is RWX.
 * `scratch`: the stack pointer is moved into the unread page for a raw
 * openat of /proc/self/mem for writing (refused at its exit under strict:
 * the tracer injects a close, and first writes scratch data below the
 * stack pointer: a write into a private file page reads the page first).
 * Natively the open succeeds and code is written through it over the
 * program's own text and run.
 * `ino0`: as the default, but the server tells f's inode number as 0 (red
 * team 7): a tracer that takes a private mapping with no inode number for
 * anonymous memory (PROCMAP_QUERY and the maps file both show the number
 * the server gave) samples the stack there and waits for ever.
 */
#define _GNU_SOURCE
#include "tw_fuse.h"

#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define FILE_NODE 2

static pid_t program;
static int answer_own, ino0;

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	/* The file's inode number, as the server tells it (0 for f with ino0). */
	attr->ino = node == FILE_NODE && ino0 ? 0 : node;
	attr->blksize = 4096;
	attr->mode = node == FILE_NODE ? S_IFREG | 0644 : S_IFDIR | 0755;
	attr->nlink = node == FILE_NODE ? 1 : 2;
	attr->size = node == FILE_NODE ? 4096 : 0;
}

TW_DEFINE_PATCH_TARGET;

struct old_mmap_args {
	uint32_t addr, len, prot, flags, fd, offset;
};

/* A file "f"; its READs are kept unanswered (with answer_own, answered
 * for the program's own threads: the page holds an old_mmap block). */
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
	case FUSE_READ: {
		static unsigned char page[4096];
		struct old_mmap_args block = {0, 4096, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, (uint32_t)-1, 0};

		if (answer_own && (pid_t)in->pid == program) {
			memcpy(page, &block, sizeof(block));
			tw_fuse_reply(in->unique, 0, page, sizeof(page));
		}
		break; /* another's: never answered */
	}
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

/* Raw syscall nr(a, b, c) with the stack pointer at `stack` (the syscall
 * instruction itself touches no stack). */
static long syscall3_on_stack(void *stack, long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("mov %%rsp, %%r12\n\t"
			 "mov %[stack], %%rsp\n\t"
			 "syscall\n\t"
			 "mov %%r12, %%rsp"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), [stack] "r"(stack)
			 : "rcx", "r11", "r12", "memory");
	return ret;
}

/* Write code over the program's own text through /proc/self/mem opened
 * with the stack in the unread page; run it. */
static void scratch_open(unsigned char *unread)
{
	long fd = syscall3_on_stack(unread + 2048, SYS_openat, AT_FDCWD, (long)(uintptr_t)"/proc/self/mem", O_RDWR);

	if (tw_step_raw("scratch_mem_open", "openat", fd) < 0)
		return;
	if (pwrite((int)fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) == (ssize_t)sizeof(TW_CODE))
		tw_run("scratch_call", (const void *)tw_patch_target);
	close((int)fd);
}

static long int80_1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static void old_mmap_block(void *block)
{
	long rc = int80_1(90, (long)(uintptr_t)block);
	void *p = (void *)(uintptr_t)(uint32_t)rc;
	struct tw_map m;

	if (tw_step_raw("block_old_mmap", "mmap", rc) < 0)
		return;
	if (tw_find_map(p, &m) == 0 && m.perms[1] == 'w' && m.perms[2] == 'x') {
		tw_put_code(p);
		tw_run("block_call", p);
	}
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tw_peek_XXXXXX";
	char path[64];
	unsigned char *unread, *code;
	pthread_t server;
	int fd;

	tw_init();
	program = getpid();
	const char *mode = argc == 2 ? argv[1] : "stack";

	if (strcmp(mode, "stack") && strcmp(mode, "block") && strcmp(mode, "scratch") && strcmp(mode, "ino0")) {
		fprintf(stderr, "usage: %s [block|scratch|ino0]\n", argv[0]);
		return 2;
	}
	answer_own = !strcmp(mode, "block");
	ino0 = !strcmp(mode, "ino0");
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
	if (unread != MAP_FAILED && !strcmp(mode, "scratch")) {
		scratch_open(unread);
		umount2(dir, MNT_DETACH);
		return tw_done();
	}
	if (unread != MAP_FAILED && answer_own) {
		old_mmap_block(unread);
		umount2(dir, MNT_DETACH);
		return tw_done();
	}
	code = tw_mmap("code_mmap", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (unread == MAP_FAILED || code == MAP_FAILED)
		return tw_done();
	tw_put_code(code);
	if (tw_step_raw("peek_rx_mprotect", "mprotect",
			syscall3_on_stack(unread + 2048, SYS_mprotect, (long)(uintptr_t)code, (long)tw_page(),
					  TW_RX)) == 0)
		tw_run("stack_peek_call", code);
	umount2(dir, MNT_DETACH);
	return tw_done();
}
