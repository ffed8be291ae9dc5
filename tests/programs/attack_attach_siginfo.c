/*
 * attack_attach_siginfo: a signal that reads as a ptrace event at the seize.
 *
 * A process may queue a signal to itself with any si_code
 * (rt_sigqueueinfo: only another process is refused one the kernel would
 * make). This one maps the first two pages of /bin/sh private read+write,
 * writes code into the first (its own copy of the page), makes both
 * read-only (as attach_copied), says READY with its pid, then queues
 * SIGTRAP to itself in a loop, each one with si_code SIGTRAP | (EVENT << 8)
 * (EVENT: 4, PTRACE_EVENT_EXEC, by default), caught by a handler, until
 * stdin has a line. A tracer that seizes it finds it, more often than not,
 * in that signal's delivery stop: its signal information is what the
 * program forged, only the wait status says it is a signal. Then the
 * written page is made read+execute (copy_rx) and called; the clean one
 * beside it too (clean_rx). With `threads`, two more threads sleep
 * meanwhile.
 */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/syscall.h>

static volatile sig_atomic_t caught;

static void on_trap(int sig)
{
	(void)sig;
	caught++;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		usleep(1000);
	return NULL;
}

int main(int argc, char **argv)
{
	struct pollfd in = {.fd = 0, .events = POLLIN};
	size_t pg = tw_page();
	int event = 4, threads = 0;
	pthread_t thread;
	siginfo_t info;
	char line[64];
	unsigned char *p;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "threads") == 0)
			threads = 1;
		else
			event = atoi(argv[i]);
	}
	tw_init();
	signal(SIGTRAP, on_trap);
	p = tw_written_copy("/bin/sh");
	if (p == MAP_FAILED)
		return tw_done();
	for (i = 0; threads && i < 2; i++)
		pthread_create(&thread, NULL, sleeper, NULL);
	memset(&info, 0, sizeof(info));
	info.si_signo = SIGTRAP;
	info.si_code = SIGTRAP | (event << 8);
	info.si_pid = getpid();
	tw_emit("READY %d", (int)getpid());
	while (poll(&in, 1, 0) == 0)
		syscall(SYS_rt_sigqueueinfo, getpid(), SIGTRAP, &info);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	tw_step("forged", "rt_sigqueueinfo", caught > 0 ? 0 : -1, caught > 0 ? 0 : EINVAL);
	tw_mprotect("clean_rx", p + pg, pg, TW_RX);
	if (tw_mprotect("copy_rx", p, pg, TW_RX) == 0)
		tw_run("copy_call", p);
	return tw_done();
}
