/*
 * attack_exec_drain PAYLOAD [tries]: an exec completed while the tracer
 * takes the stops already reported, after it took a stop of the exec'ing
 * process's leader (red team 7).
 *
 * OLD threads of the main process loop in madvise(MADV_DONTFORK) (each
 * call a cheap stop for the tracer); made first, they come last when the
 * kernel lists the stopped tasks. Each try forks a process P whose main
 * thread (the leader L) loops in madvise too, while its second thread T
 * waits a little and execs w, a copy of PAYLOAD written by the run (a
 * static program that prints RAN drain<i>_call with no trapped call).
 * When the tracer has taken L's stop and is still taking the old threads'
 * when T's exec ends, the exec stop (reported under L's number) is queued
 * behind L's stop, which the kernel now lets the tracer act on: answered
 * as a syscall stop (the exec stop has no syscall), it lets w run before
 * its exec is judged. Natively every try prints its RAN line.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "common.h"

#ifndef OLD
#define OLD 300
#endif

static char dir[] = "/tmp/tw_drain_XXXXXX";
static char written[256];
static atomic_int stop;
static int delay_us;
static char label[32];

/* Natively the old threads rest between calls (300 spinning ones would
 * starve the tries); traced, each is stopped again long before the
 * tracer next takes the reported stops. */
static void dontfork_loop(int rest_us)
{
	void *page = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	while (!atomic_load(&stop)) {
		madvise(page, tw_page(), MADV_DONTFORK);
		if (rest_us)
			usleep(rest_us);
	}
}

static void *old_thread(void *unused)
{
	(void)unused;
	dontfork_loop(2000);
	return NULL;
}

static void *exec_thread(void *unused)
{
	char *argv[] = {written, label, NULL};
	char *envp[] = {NULL};

	(void)unused;
	usleep(delay_us);
	execve(written, argv, envp);
	tw_step("w", "execve", -1, errno);
	_exit(1);
}

int main(int argc, char **argv)
{
	int tries = argc == 3 ? atoi(argv[2]) : 40;
	pthread_t old[OLD];

	tw_init();
	if (argc < 2 || !mkdtemp(dir))
		return 2;
	snprintf(written, sizeof(written), "%s/w", dir);
	if (tw_copy_file(argv[1], written) != 0)
		return 2;
	for (int i = 0; i < OLD; i++)
		pthread_create(&old[i], NULL, old_thread, NULL);
	for (int i = 0; i < tries; i++) {
		pid_t p;

		snprintf(label, sizeof(label), "drain%d_call", i);
		delay_us = 20000 + (i * 7919) % 20000;
		p = fork();
		if (p == 0) {
			pthread_t t;

			pthread_create(&t, NULL, exec_thread, NULL);
			dontfork_loop(0);
			_exit(1);
		}
		if (p > 0)
			waitpid(p, NULL, 0);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < OLD; i++)
		pthread_join(old[i], NULL);
	unlink(written);
	rmdir(dir);
	return tw_done();
}
