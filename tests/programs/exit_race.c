/*
 * Threads that vanish at a stop (issue 10, route 10): ROUNDS times, a child
 * starts threads that keep making calls a strict tracer stops and refuses
 * (mprotect of written memory to read+execute) or that create threads, while
 * its main thread calls exit_group at a varying moment -- often while the
 * tracer is still handling another thread's stop. COUNT is the number of
 * children that ended with exit status 0.
 */
#include "common.h"

#include <pthread.h>

static void *noop(void *arg)
{
	return arg;
}

static void *flipper(void *arg)
{
	size_t pg = tw_page();
	unsigned char *p = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)arg;
	if (p == MAP_FAILED)
		return NULL;
	tw_put_code(p);
	for (;;) {
		mprotect(p, pg, TW_RX);
		mprotect(p, pg, TW_RW);
	}
	return NULL;
}

static void *cloner(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t t;

		if (pthread_create(&t, NULL, noop, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = tw_count_arg(argc, argv, 1, "ROUNDS"), clean = 0;

	tw_init();
	for (long i = 0; i < rounds; i++) {
		pid_t child = fork();
		int status;

		if (child == 0) {
			pthread_t a, b, c;

			pthread_create(&a, NULL, flipper, NULL);
			pthread_create(&b, NULL, flipper, NULL);
			pthread_create(&c, NULL, cloner, NULL);
			for (volatile long spin = 0; spin < (i * 7919) % 200000; spin++)
				;
			_exit(0);
		}
		if (child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			clean++;
	}
	tw_emit("COUNT %ld", clean);
	return tw_done();
}
