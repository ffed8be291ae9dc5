/*
 * A descriptor swapped between the check and the kernel's use (issue 10,
 * route 5): thread B keeps turning descriptor X into a clean file on disk and
 * into a memfd holding code (dup2), while thread A maps X read+execute. A
 * tracer that judges the mmap by what X was at entry maps the code. A runs
 * the mapping whenever it holds the code (RAN once). A runs at least ROUNDS
 * rounds, and at least 1 s once B runs (on a busy machine B may not get a
 * CPU during A's first rounds).
 *
 * usage: fd_swap ROUNDS
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define SLOT 100

static volatile int stop, started;
static int clean_fd, code_fd;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *swapper(void *arg)
{
	(void)arg;
	started = 1;
	while (!stop) {
		dup2(code_fd, SLOT);
		dup2(clean_fd, SLOT);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = tw_count_arg(argc, argv, 1, "ROUNDS");
	size_t pg = tw_page();
	pthread_t thread;
	int ran = 0;

	tw_init();
	clean_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	code_fd = memfd_create("code", MFD_CLOEXEC);
	if (clean_fd < 0 || code_fd < 0 || ftruncate(code_fd, (off_t)pg) != 0 ||
	    pwrite(code_fd, TW_CODE, sizeof(TW_CODE), 0) != (ssize_t)sizeof(TW_CODE) || dup2(clean_fd, SLOT) != SLOT)
		return 1;
	pthread_create(&thread, NULL, swapper, NULL);
	while (!started)
		sched_yield();
	double until = now() + 1.0;
	for (long i = 0; (i < rounds || now() < until) && !ran; i++) {
		unsigned char *p = mmap(NULL, pg, TW_RX, MAP_PRIVATE, SLOT, 0);

		if (p == MAP_FAILED)
			continue;
		if (memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0) {
			tw_run("swap_call", p);
			ran = 1;
		}
		munmap(p, pg);
	}
	stop = 1;
	pthread_join(thread, NULL);
	return tw_done();
}
