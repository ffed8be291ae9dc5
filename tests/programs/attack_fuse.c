/*
 * Attack: code served, never written. In a private mount namespace the
 * program mounts a FUSE filesystem it serves itself (a thread answering
 * /dev/fuse): one file, "code", whose first page holds the code blob and
 * whose attributes say it was last changed in 1970. No write(2), no file
 * opened for writing but /dev/fuse: the kernel fills the page cache from the
 * server's READ replies. The main thread maps code R-X and runs it. Needs
 * root (mount namespaces, FUSE); otherwise `STEP fuse_mount mount rc=-1 ...`.
 *
 * With argv[1] "populate" it attacks the tracer's liveness instead: the main
 * thread maps code read-only with MAP_POPULATE, so its mmap waits in the
 * kernel for the READ reply, and the server thread opens a file for writing
 * (a tracer that stops every sibling while an open is judged finds the main
 * thread unable to stop) and makes a memory call of its own (an anonymous
 * mmap and munmap) before it answers. A tracer that judges one memory call
 * of an address space at a time must not wait for ever either.
 *
 * With argv[1] "overtake" it attacks what a tracer does about that: the main
 * thread replaces a clean read-only page of its own program, MAP_FIXED, with
 * code from the FUSE file (MAP_POPULATE; the server answers READ only after
 * 3 s), and meanwhile a second thread mprotects that page R-X. A tracer that
 * judges the mprotect past the stalled mmap from a model that still shows the
 * clean page lets the served code run (RAN overtake_call).
 *
 * With argv[1] "attach" it says READY and waits for a line on stdin (a
 * tracer attaches) after opening code, before mapping it R-X: the mount
 * is older than the seize.
 *
 * With argv[1] "window" or "windowseal" it attacks the window between the
 * kernel making a mapping and the tracer undoing it at the call's exit: an
 * i386 old_mmap whose block the tracer cannot read maps code RWX with
 * MAP_POPULATE, which waits for the server thread. A tracer that holds the
 * other threads lets them go after a while (the server must answer); then a
 * runner thread calls the page (RAN window_call), or a sealer thread mseals
 * it so the undo fails, and main calls it (RAN windowseal_call).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "tw_fuse.h"

#define CODE_NODE 2
#define CODE_SIZE 4096

#define I386_NR_OLD_MMAP 90
#define WINDOW_ADDR 0x90000000UL /* above MAP_32BIT's range, where the block is */
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

static int populate, overtake;
static void *overtake_page;
static atomic_int window_stop, window_won;
static int window_fd = -1;
static sigjmp_buf window_guard;
static unsigned char page[CODE_SIZE]; /* the file's content */

static void *make_executable(void *unused)
{
	(void)unused;
	usleep(500 * 1000); /* the mmap is in the kernel by now, waiting for READ */
	tw_mprotect("overtake_rx_mprotect", overtake_page, tw_page(), TW_RX);
	return NULL;
}

static void fill_attr(struct fuse_attr *attr, uint64_t node)
{
	memset(attr, 0, sizeof(*attr));
	attr->ino = node;
	attr->mode = node == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0755;
	attr->nlink = node == FUSE_ROOT_ID ? 2 : 1;
	attr->size = node == FUSE_ROOT_ID ? 0 : CODE_SIZE;
	attr->blocks = attr->size / 512;
	attr->blksize = 4096;
	attr->atime = attr->mtime = attr->ctime = 1;
}

/* The server's part: INIT with readahead and one page a request, a file
 * "code" of one page, READ after 3 s (overtake) or after a write open and
 * a memory call (populate). */
static int handle(struct fuse_in_header *in, void *arg)
{
	switch (in->opcode) {
	case FUSE_INIT: {
		struct fuse_init_out init = {.major = FUSE_KERNEL_VERSION,
					     .minor = FUSE_KERNEL_MINOR_VERSION,
					     .max_readahead = 65536,
					     .max_write = 4096,
					     .max_pages = 1,
					     .time_gran = 1};

		tw_fuse_reply(in->unique, 0, &init, sizeof(init));
		break;
	}
	case FUSE_LOOKUP: {
		struct fuse_entry_out entry = {0};

		if (in->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, "code") != 0) {
			tw_fuse_reply(in->unique, -ENOENT, NULL, 0);
			break;
		}
		entry.nodeid = CODE_NODE;
		entry.entry_valid = entry.attr_valid = 3600;
		fill_attr(&entry.attr, CODE_NODE);
		tw_fuse_reply(in->unique, 0, &entry, sizeof(entry));
		break;
	}
	case FUSE_GETATTR:
		tw_fuse_reply_attr(in, fill_attr, 3600);
		break;
	case FUSE_OPEN:
	case FUSE_OPENDIR:
		tw_fuse_reply_open(in->unique, 1, FOPEN_KEEP_CACHE);
		break;
	case FUSE_READ: {
		struct fuse_read_in *rd = arg;
		size_t size = rd->offset >= CODE_SIZE ? 0 : CODE_SIZE - rd->offset;

		if (overtake)
			sleep(3);
		if (populate) {
			int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
			void *scratch = mmap(NULL, 4096, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (scratch != MAP_FAILED)
				munmap(scratch, 4096);
			if (null >= 0)
				close(null);
		}

		if (size > rd->size)
			size = rd->size;
		tw_fuse_reply(in->unique, 0, page + (rd->offset < CODE_SIZE ? rd->offset : 0), size);
		break;
	}
	case FUSE_FLUSH:
	case FUSE_RELEASE:
	case FUSE_RELEASEDIR:
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
	memset(page, 0xcc, sizeof(page));
	memcpy(page, TW_CODE, sizeof(TW_CODE));
	tw_fuse_serve(handle);
	return NULL;
}

static void window_segv(int sig)
{
	(void)sig;
	siglongjmp(window_guard, 1);
}

static int window_mapped(void)
{
	unsigned char vec;

	return mincore((void *)WINDOW_ADDR, tw_page(), &vec) == 0;
}

/* Call the served code at WINDOW_ADDR as soon as a mapping is there. */
static void *window_runner(void *unused)
{
	(void)unused;
	signal(SIGSEGV, window_segv);
	while (!atomic_load(&window_stop) && !atomic_load(&window_won)) {
		if (window_mapped() && sigsetjmp(window_guard, 1) == 0) {
			tw_run("window_call", (void *)WINDOW_ADDR);
			atomic_store(&window_won, 1);
		}
	}
	return NULL;
}

/*
 * mseal the page at WINDOW_ADDR as soon as a mapping is there; then close
 * the FUSE file (its FLUSH is answered now: a process killed with it open
 * would wait in exit for a server that died with it).
 */
static void *window_sealer(void *unused)
{
	(void)unused;
	while (!atomic_load(&window_stop) && !atomic_load(&window_won)) {
		if (syscall(SYS_mseal, WINDOW_ADDR, tw_page(), 0) == 0) {
			close(window_fd);
			atomic_store(&window_won, 1);
		}
	}
	return NULL;
}

/*
 * i386 old_mmap (int $0x80) with its block in memfd_secret memory: the FUSE
 * file (code) RWX, MAP_PRIVATE|MAP_FIXED|MAP_POPULATE at WINDOW_ADDR. The
 * populate waits for the server thread's READ reply while the mapping
 * exists; meanwhile a runner thread calls the page (or a sealer mseals it,
 * and main runs it after the call).
 */
static void window(int fd, int seal)
{
	size_t pg = tw_page();
	int secret = (int)syscall(SYS_memfd_secret, 0);
	uint32_t *block;
	pthread_t helper;
	long rc;

	tw_step("secret_create", "memfd_secret", secret, errno);
	if (secret < 0 || ftruncate(secret, (off_t)pg) != 0)
		return;
	block = mmap(NULL, pg, TW_RW, MAP_SHARED | MAP_32BIT, secret, 0);
	if (block == MAP_FAILED)
		return;
	block[0] = (uint32_t)WINDOW_ADDR;
	block[1] = (uint32_t)pg;
	block[2] = TW_RWX;
	block[3] = MAP_PRIVATE | MAP_FIXED | MAP_POPULATE;
	block[4] = (uint32_t)fd;
	window_fd = fd;
	block[5] = 0;
	pthread_create(&helper, NULL, seal ? window_sealer : window_runner, NULL);
	__asm__ volatile("int $0x80"
			 : "=a"(rc)
			 : "a"((long)I386_NR_OLD_MMAP), "b"((long)(uintptr_t)block)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	if (rc < 0 && rc > -4096)
		tw_step_raw("window_old_mmap", "mmap", rc);
	else
		tw_emit("STEP window_old_mmap mmap rc=0x%lx errno=0", (unsigned long)(uint32_t)rc);
	for (int i = 0; i < 1000 && !atomic_load(&window_won) && !(rc < 0 && rc > -4096); i++)
		usleep(1000); /* natively the mapping stays: let the helper use it */
	if (seal && atomic_load(&window_won) && window_mapped()) {
		tw_show_map("window_sealed", (void *)WINDOW_ADDR);
		tw_run("windowseal_call", (void *)WINDOW_ADDR);
	}
	atomic_store(&window_stop, 1);
	pthread_join(helper, NULL);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tw_fuse_XXXXXX";
	char path[256];
	pthread_t server;
	void *p;
	int rc, fd;

	tw_init();
	populate = argc > 1 && strcmp(argv[1], "populate") == 0;
	overtake = argc > 1 && strcmp(argv[1], "overtake") == 0;
	if (!mkdtemp(dir))
		return 1;
	rc = tw_fuse_mount(dir);
	if (rc != 0)
		return tw_done();
	pthread_create(&server, NULL, serve, NULL);
	snprintf(path, sizeof(path), "%s/code", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	tw_step("fuse_open", "open", fd, errno);
	if (fd >= 0 && argc > 1 && strncmp(argv[1], "window", 6) == 0) {
		int seal = strcmp(argv[1], "windowseal") == 0;

		window(fd, seal);
		if (!seal || !atomic_load(&window_won))
			close(fd); /* else the sealer closed it; left open, the exit
				    * would wait in its flush for the server thread
				    * exit_group has already killed */
	} else if (fd >= 0 && overtake) {
		int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
		pthread_t racer;

		overtake_page = mmap(NULL, tw_page(), PROT_READ, MAP_PRIVATE, self, 0);
		if (self >= 0 && overtake_page != MAP_FAILED) {
			pthread_create(&racer, NULL, make_executable, NULL);
			p = tw_mmap("overtake_mmap", overtake_page, tw_page(), PROT_READ,
				    MAP_PRIVATE | MAP_FIXED | MAP_POPULATE, fd, 0);
			pthread_join(racer, NULL);
			if (p != MAP_FAILED && tw_show_map("overtake_page", overtake_page) == 1)
				tw_run("overtake_call", overtake_page);
		}
		close(fd);
	} else if (fd >= 0 && populate) {
		p = tw_mmap("populate_mmap", NULL, tw_page(), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (p != MAP_FAILED && memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0)
			tw_emit("COUNT 1");
		close(fd);
	} else if (fd >= 0) {
		if (argc > 1 && strcmp(argv[1], "attach") == 0) {
			char line[64];

			tw_emit("READY %d", (int)getpid());
			if (!fgets(line, sizeof(line), stdin))
				line[0] = 0;
		}
		p = tw_mmap("fuse_rx_mmap", NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, 0);
		if (p != MAP_FAILED)
			tw_run("fuse_call", p);
		close(fd);
	}
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return tw_done();
}
