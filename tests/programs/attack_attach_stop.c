/*
 * attack_attach_stop: group stops and thread churn while a tracer seizes.
 *
 * Writes code into an anonymous read+write page, says READY with its pid;
 * `stop`: a child forked before READY sends the program SIGSTOP, then
 * SIGCONT, every 0-2 ms until main asks it to end (always after a
 * SIGCONT: a child killed between the two would leave the program stopped
 * for good, natively too); `churn`: a thread makes and joins
 * short-lived threads in a loop (thread numbers reused fast). Each
 * short-lived thread, once stdin had a line, makes the page read+execute
 * and calls it; so does main, 0.3 s after the line. COUNT = attempts that
 * failed.
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

static unsigned char *page;
static volatile int *quit;
static atomic_int go, refused, ran;

static void *shortlived(void *arg)
{
	(void)arg;
	if (atomic_load(&go) && !atomic_load(&ran)) {
		if (mprotect(page, tw_page(), TW_RX) == 0) {
			if (!atomic_exchange(&ran, 1))
				tw_run("churn_call", page);
		} else {
			atomic_fetch_add(&refused, 1);
		}
	}
	return NULL;
}

static void *churner(void *arg)
{
	pthread_t t;

	(void)arg;
	for (;;) {
		if (pthread_create(&t, NULL, shortlived, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int stop = 0, churn = 0, i;
	pid_t child = -1;
	pthread_t t;
	char line[64];

	for (i = 1; i < argc; i++) {
		stop |= strcmp(argv[i], "stop") == 0;
		churn |= strcmp(argv[i], "churn") == 0;
	}
	tw_init();
	page = tw_mmap("rw_mmap", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return 1;
	tw_put_code(page);
	quit = mmap(NULL, tw_page(), TW_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (quit == MAP_FAILED)
		return 1;
	if (stop) {
		pid_t parent = getpid();

		child = fork();
		if (child == 0) {
			srand(getpid());
			while (!*quit) {
				kill(parent, SIGSTOP);
				usleep(rand() % 2000);
				kill(parent, SIGCONT);
				usleep(rand() % 2000);
			}
			_exit(0);
		}
	}
	if (churn)
		pthread_create(&t, NULL, churner, NULL);
	tw_emit("READY %d", getpid());
	while (!fgets(line, sizeof(line), stdin))
		if (feof(stdin))
			break;
	atomic_store(&go, 1);
	usleep(300000);
	if (child > 0) {
		*quit = 1;
		waitpid(child, NULL, 0);
	}
	if (!atomic_load(&ran)) {
		if (tw_mprotect("make_rx", page, tw_page(), TW_RX) == 0 && !atomic_exchange(&ran, 1))
			tw_run("main_call", page);
	}
	tw_emit("COUNT %d", atomic_load(&refused));
	return tw_done();
}
