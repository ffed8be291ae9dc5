/*
 * Attack: get rid of the tracer. The program (root, like its tracer) sends
 * SIGKILL to its parent -- under `trampwatch run` that is trampwatch itself
 * -- from a child, while the main process keeps trying, every 10 ms for 3
 * seconds, the plain JIT sequence: RW page, code written, mprotect R-X, run.
 * Natively the parent is only the shell or test runner, so the program
 * kills nothing unless asked: it signals its parent only when given "kill"
 * (the test runs it natively without it).
 */
#define _GNU_SOURCE
#include <time.h>

#include "common.h"

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	pid_t tracer = getppid();
	struct timespec tick = {0, 10 * 1000 * 1000};
	int i, ran = 0;

	tw_init();
	if (argc >= 2 && strcmp(argv[1], "kill") == 0) {
		pid_t killer = fork();

		if (killer == 0) {
			nanosleep(&tick, NULL);
			kill(tracer, SIGKILL);
			_exit(0);
		}
	}
	for (i = 0; i < 300 && !ran; i++) {
		char *p = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p != MAP_FAILED) {
			tw_put_code(p);
			if (mprotect(p, pg, TW_RX) == 0) {
				tw_run("after_kill_call", p);
				ran = 1;
			}
			munmap(p, pg);
		}
		nanosleep(&tick, NULL);
	}
	return tw_done();
}
