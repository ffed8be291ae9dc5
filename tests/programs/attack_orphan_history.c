/*
 * attack_orphan_history [tries]: a child whose creator's fork event never
 * comes inherits written code its model does not show.
 *
 * Each try forks a process P. P maps the first page of its own program
 * file private read-write, writes code there and makes it read-only: a
 * page of a clean file, written (its copy is private), read-only now. P's
 * second thread T forks again and again while P's main thread execs this
 * program again (`--reap`, which waits for every child P has): the exec
 * kills T, maybe after a child C of T was made but before T's fork event
 * was taken, so nothing tells C's creator. Each child makes the page
 * read+execute and calls it; a tracer must judge that as the w-to-x it is
 * (the page was written), also for C. Natively the code runs in every
 * child: COUNT is the number of children that ran it, RAN orphan_call once.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>

#include "common.h"

static unsigned char *page;
static int *ran; /* shared by every process of the run */

static void *forker(void *unused)
{
	(void)unused;
	for (int i = 0; i < 200; i++) {
		pid_t child = fork();

		if (child == 0) {
			int (*code)(void) = (int (*)(void))(uintptr_t)page;

			if (mprotect(page, tw_page(), TW_RX) == 0 && code() == TW_CODE_RESULT)
				__atomic_add_fetch(ran, 1, __ATOMIC_SEQ_CST);
			_exit(0);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int tries = argc == 2 ? atoi(argv[1]) : 20;

	tw_init();
	if (argc == 2 && strcmp(argv[1], "--reap") == 0) {
		while (wait(NULL) > 0)
			;
		return 0;
	}
	ran = mmap(NULL, tw_page(), TW_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ran == MAP_FAILED)
		return 1;
	for (int i = 0; i < tries; i++) {
		pid_t p = fork();

		if (p == 0) {
			char *args[] = {argv[0], "--reap", NULL};
			int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
			pthread_t t;

			page = fd < 0 ? MAP_FAILED : mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE, fd, 0);
			if (page == MAP_FAILED)
				_exit(1);
			tw_put_code(page);
			if (mprotect(page, tw_page(), PROT_READ) != 0)
				_exit(1);
			pthread_create(&t, NULL, forker, NULL);
			usleep(2000 + (i % 10) * 1000);
			execv("/proc/self/exe", args);
			_exit(127);
		}
		if (p > 0)
			waitpid(p, NULL, 0);
	}
	tw_emit("COUNT %d", *ran);
	if (*ran > 0)
		tw_emit("RAN orphan_call");
	return tw_done();
}
