/*
 * attack_exec_fd_leak [N]: a chain of N execs, each made by a second
 * thread after a W^X event of its own (red team 7).
 *
 * The thread writes code into a read-write page and makes it R-X (a W^X
 * event: a tracer reads the thread's stack to name the caller, keeping
 * descriptors of its /proc/TID files), then execs this program with N-1;
 * the main thread waits meanwhile. An exec by a thread that is not the
 * leader gives the thread the leader's number: its own number is gone
 * with no exit to report, and a tracer that keeps descriptors per task
 * number until the task's exit or exec keeps those for ever, two more per
 * exec, until it has no descriptor left. Natively the chain ends (DONE).
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "common.h"

static char next[16];
static char *self;

static void *exec_next(void *unused)
{
	unsigned char *page = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *args[] = {self, next, NULL};

	(void)unused;
	if (page != MAP_FAILED) {
		tw_put_code(page);
		mprotect(page, tw_page(), TW_RX);
	}
	execv("/proc/self/exe", args);
	tw_step("chain", "execve", -1, errno);
	_exit(1);
}

int main(int argc, char **argv)
{
	int left = argc == 2 ? atoi(argv[1]) : 1200;
	pthread_t t;

	tw_init();
	if (left <= 0)
		return tw_done();
	self = argv[0];
	snprintf(next, sizeof(next), "%d", left - 1);
	pthread_create(&t, NULL, exec_next, NULL);
	for (;;)
		pause();
}
