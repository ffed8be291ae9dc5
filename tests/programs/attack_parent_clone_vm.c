/*
 * attack_parent_clone_vm: a child made with clone(CLONE_PARENT | CLONE_VM)
 * by a process whose parent is gone names a parent the tracer does not
 * know; let go at its first stop, before its creator's event, it is learnt
 * from its maps as a process of its own, though it shares its creator's
 * address space.
 *
 * Main forks P, which makes C and exits (C's parent is now the reaper).
 * C maps a private read-only copy of its program's first page (clean),
 * then makes N with clone(CLONE_PARENT | CLONE_VM) on a stack of its own.
 * N makes the page read-write, writes TW_CODE into it and makes it
 * read-only again; C then makes it read+execute and calls it
 * (RAN parent_vm_call, in C).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "common.h"

static volatile int stage;
static void *page;

static int child(void *arg)
{
	(void)arg;
	usleep(200000);
	if (tw_mprotect("page_rw", page, tw_page(), TW_RW) == 0) {
		tw_put_code(page);
		tw_mprotect("page_ro", page, tw_page(), PROT_READ);
	}
	stage = 1;
	_exit(0);
}

int main(void)
{
	static char stack[1 << 16] __attribute__((aligned(16)));
	pid_t maker;

	tw_init();
	maker = fork();
	if (maker == 0) {
		pid_t made_by = getpid();

		if (fork() == 0) {
			int fd = open("/proc/self/exe", O_RDONLY);
			time_t end = time(NULL) + 5;

			while (getppid() == made_by)
				;
			page = tw_mmap("page_map", NULL, tw_page(), PROT_READ, MAP_PRIVATE, fd, 0);
			close(fd);
			if (page == MAP_FAILED)
				_exit(0);
			if (clone(child, stack + sizeof(stack), CLONE_PARENT | CLONE_VM | SIGCHLD, NULL) < 0) {
				tw_step("clone", "clone", -1, errno);
				_exit(0);
			}
			while (!stage && time(NULL) < end)
				;
			if (stage && tw_mprotect("page_rx", page, tw_page(), TW_RX) == 0)
				tw_run("parent_vm_call", page);
			_exit(0);
		}
		_exit(0);
	}
	tw_wait_child("maker", maker);
	usleep(800000);
	return tw_done();
}
