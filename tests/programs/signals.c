/*
 * Signals: stop itself with SIGSTOP and be continued by a child's SIGCONT;
 * handle SIGCHLD; block every signal around a mmap/munmap and a child's exit,
 * then unblock. COUNT is the number of SIGCHLD handler runs (2 when all works).
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>

static volatile sig_atomic_t sigchld_runs;

static void on_sigchld(int sig)
{
	(void)sig;
	sigchld_runs++;
}

/* The state letter of pid from /proc/PID/stat, or 0. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	char *close_paren;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	close_paren = strrchr(buf, ')');
	return close_paren && close_paren[1] == ' ' ? close_paren[2] : 0;
}

/*
 * Child: once the parent says it is about to stop, send SIGCONT whenever it is
 * seen stopped, until it says it runs again (up to 10 s). Repeating the
 * SIGCONT keeps this right when a tracer holds the stop and re-delivers it.
 * Exits 0 if the parent was seen stopped.
 */
static void continuer(pid_t parent, int about_to_stop, int running_again)
{
	struct pollfd ack = {.fd = running_again, .events = POLLIN};
	int waited, seen_stopped = 0;
	char byte, state;

	if (read(about_to_stop, &byte, 1) != 1)
		_exit(2);
	for (waited = 0; waited < 10000; waited++) {
		state = proc_state(parent);
		if (state == 'T' || state == 't') {
			seen_stopped = 1;
			kill(parent, SIGCONT);
		}
		if (poll(&ack, 1, 1) == 1)
			_exit(seen_stopped ? 0 : 1);
	}
	kill(parent, SIGCONT);
	_exit(3);
}

int main(void)
{
	struct sigaction sa = {0};
	sigset_t all, old;
	size_t pg = tw_page();
	pid_t pid, self = getpid();
	int stop_pipe[2], cont_pipe[2];
	void *p;
	int rc;

	tw_init();
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	rc = sigaction(SIGCHLD, &sa, NULL);
	tw_step("sigchld_sigaction", "rt_sigaction", rc, errno);

	if (pipe2(stop_pipe, O_CLOEXEC) < 0 || pipe2(cont_pipe, O_CLOEXEC) < 0)
		return 1;
	pid = fork();
	if (pid == 0)
		continuer(self, stop_pipe[0], cont_pipe[0]);
	tw_step("continuer_fork", "fork", pid, errno);
	if (pid < 0)
		return 1;
	if (write(stop_pipe[1], "s", 1) != 1)
		return 1;
	rc = raise(SIGSTOP);
	tw_step("stop_self", "tgkill", rc, errno);
	if (write(cont_pipe[1], "c", 1) != 1)
		return 1;
	tw_wait_child("continuer", pid);

	sigfillset(&all);
	rc = sigprocmask(SIG_BLOCK, &all, &old);
	tw_step("block_all", "rt_sigprocmask", rc, errno);
	p = tw_mmap("blocked_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED)
		tw_munmap("blocked_munmap", p, pg);
	pid = fork();
	if (pid == 0)
		_exit(0);
	tw_step("quick_fork", "fork", pid, errno);
	if (pid > 0)
		tw_wait_child("quick", pid);
	/* The quick child's SIGCHLD is pending until here. */
	rc = sigprocmask(SIG_SETMASK, &old, NULL);
	tw_step("unblock_all", "rt_sigprocmask", rc, errno);
	tw_emit("COUNT %d", (int)sigchld_runs);
	return tw_done();
}
