/*
 * attack_parent_clone_orphan [tries]: a child held for its creator's fork
 * event, named as its parent's child (CLONE_PARENT), when that creator's
 * exec kills the creating thread before the event.
 *
 * As attack_fork_exec_orphan, but P's second thread T makes its children
 * with clone(CLONE_PARENT | SIGCHLD): each names main, P's parent, as its
 * parent, not P. P's main thread execs this program again (`--exit`, which
 * ends at once); the exec kills T, maybe after a child C was made but
 * before T's event was taken. Main waits for P, then for every child it
 * has (C among them). A tracer that releases children held for an event
 * that never comes by their parent's number looks for P's and finds none
 * of C: C stays stopped, main waits for it for ever, and so does the
 * tracer. Natively COUNT is the number of tries.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include "common.h"

static void *maker(void *unused)
{
	(void)unused;
	for (;;)
		if (syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0) == 0)
			_exit(0);
	return NULL;
}

int main(int argc, char **argv)
{
	int tries = argc == 2 ? atoi(argv[1]) : 20;
	int ended = 0;

	tw_init();
	if (argc == 2 && strcmp(argv[1], "--exit") == 0)
		return 0;
	for (int i = 0; i < tries; i++) {
		pid_t p = fork();

		if (p == 0) {
			char *args[] = {argv[0], "--exit", NULL};
			pthread_t t;

			pthread_create(&t, NULL, maker, NULL);
			usleep(2000 + (i % 10) * 1000);
			execv("/proc/self/exe", args);
			_exit(127);
		}
		if (p > 0) {
			int status;

			if (waitpid(p, &status, 0) == p && WIFEXITED(status) && WEXITSTATUS(status) == 0)
				ended++;
			while (wait(NULL) > 0)
				;
		}
	}
	tw_emit("COUNT %d", ended);
	return tw_done();
}
