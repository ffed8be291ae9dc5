/*
 * attack_fork_exec_orphan [tries]: a child whose creator's fork event
 * never comes (red team 7).
 *
 * Each try forks a process P: P's second thread T forks again and again
 * (each child ends at once), while P's main thread execs this program
 * again (`--reap`), which waits for every child P has. The exec kills T
 * (de_thread), maybe after a child C of T was made but before T's fork
 * event was taken: a tracer that keeps C stopped until that event names
 * its creator's address space waits for an event that never comes, and
 * the new program waits for C for ever (so does the tracer). Natively
 * every child ends and is reaped: COUNT is the number of tries.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "common.h"

static void *forker(void *unused)
{
	(void)unused;
	for (;;) {
		pid_t child = fork();

		if (child == 0)
			_exit(0);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int tries = argc == 2 ? atoi(argv[1]) : 20;
	int ended = 0;

	tw_init();
	if (argc == 2 && strcmp(argv[1], "--reap") == 0) {
		while (wait(NULL) > 0)
			;
		return 0;
	}
	for (int i = 0; i < tries; i++) {
		pid_t p = fork();

		if (p == 0) {
			char *args[] = {argv[0], "--reap", NULL};
			pthread_t t;

			pthread_create(&t, NULL, forker, NULL);
			usleep(2000 + (i % 10) * 1000);
			execv("/proc/self/exe", args);
			_exit(127);
		}
		if (p > 0) {
			int status;

			if (waitpid(p, &status, 0) == p && WIFEXITED(status) && WEXITSTATUS(status) == 0)
				ended++;
		}
	}
	tw_emit("COUNT %d", ended);
	return tw_done();
}
