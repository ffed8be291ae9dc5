/*
 * attack_attach_exec: a thread execs while the tracer seizes.
 *
 * Says READY with its pid, then runs image after image of itself until
 * stdin has a line (or ends): each image starts two threads that sleep and
 * a third that, after a random pause of up to 2 ms, execs the program
 * again (the exec kills the other threads and gives the exec'ing thread
 * the main thread's number). Once stdin is readable, that thread writes
 * code into a private read+write anonymous page, makes it read+execute
 * and calls it. A tracer that attaches at any moment of the storm seizes
 * threads some of which an exec is about to kill or renumber: it must
 * neither fail nor lose the process (the new image running untraced).
 */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <time.h>

static char *self_path;

static void finish(void)
{
	size_t pg = tw_page();
	unsigned char *page;

	page = tw_mmap("code_map", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page != MAP_FAILED) {
		tw_put_code(page);
		if (tw_mprotect("make_rx", page, pg, TW_RX) == 0)
			tw_run("exec_storm_call", page);
	}
	exit(tw_done());
}

static void *execer(void *arg)
{
	char *argv[] = {self_path, "again", NULL};
	struct pollfd in = {.fd = 0, .events = POLLIN};

	(void)arg;
	usleep((unsigned)(rand() % 2000));
	if (poll(&in, 1, 0) != 0)
		finish();
	execv("/proc/self/exe", argv);
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		usleep(100);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t thread;

	self_path = argv[0];
	tw_init();
	srand((unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)clock());
	if (argc == 1)
		tw_emit("READY %d", (int)getpid());
	pthread_create(&thread, NULL, sleeper, NULL);
	pthread_create(&thread, NULL, sleeper, NULL);
	pthread_create(&thread, NULL, execer, NULL);
	for (;;)
		usleep(100);
}
