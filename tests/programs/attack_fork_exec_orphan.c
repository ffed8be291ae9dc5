/*
 * attack_fork_exec_orphan [tries [parent]]: a child whose creator's fork
 * event never comes (red team 7).
 *
 * Each try forks a process P: P's second thread T forks again and again
 * (each child ends at once), while P's main thread execs this program
 * again (`--reap`), which waits for every child P has. The exec kills T
 * (de_thread), maybe after a child C of T was made but before T's fork
 * event was taken: a tracer that keeps C stopped until that event names
 * its creator's address space waits for an event that never comes, and
 * the new program waits for C for ever (so does the tracer). Natively
 * every child ends and is reaped: COUNT is the number of tries.
 *
 * `parent` (red team 8): T makes its children with clone(CLONE_PARENT |
 * SIGCHLD): each names main, P's parent, as its parent, not P. P's main
 * thread execs this program with `--exit` (it ends at once), and main
 * waits for P, then for every child it has (C among them). A tracer that
 * releases children held for an event that never comes by the number of
 * the process that exec'd finds none of C: C stays stopped, main waits for
 * it for ever, and so does the tracer.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include "common.h"

static int parent_clone;

static void *forker(void *unused)
{
	(void)unused;
	for (;;) {
		pid_t child = parent_clone ? (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0) : fork();

		if (child == 0)
			_exit(0);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int tries = argc >= 2 ? atoi(argv[1]) : 20;
	int ended = 0;

	tw_init();
	if (argc == 2 && strcmp(argv[1], "--exit") == 0)
		return 0;
	if (argc == 2 && strcmp(argv[1], "--reap") == 0) {
		while (wait(NULL) > 0)
			;
		return 0;
	}
	parent_clone = argc == 3 && strcmp(argv[2], "parent") == 0;
	for (int i = 0; i < tries; i++) {
		pid_t p = fork();

		if (p == 0) {
			char *args[] = {argv[0], parent_clone ? "--exit" : "--reap", NULL};
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
			while (parent_clone && wait(NULL) > 0)
				;
		}
	}
	tw_emit("COUNT %d", ended);
	return tw_done();
}
