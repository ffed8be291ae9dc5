/*
 * attack_attach_clone_vm before|untraced|clone3|race: a process sharing the
 * attached one's address space (CLONE_VM, no CLONE_THREAD) makes written
 * memory executable; the attached process calls it.
 *
 * before:   the CLONE_VM child is made before READY and waits on a pipe.
 * untraced: after the line, clone(CLONE_VM | CLONE_UNTRACED | SIGCHLD).
 * clone3:   after the line, clone3(CLONE_UNTRACED) (no CLONE_VM: a fork).
 * race:     before READY a thread makes CLONE_VM | CLONE_UNTRACED children
 *           in a loop (each waits 0-20 ms, then looks for the line's flag);
 *           after the line the children alive do the mprotect.
 */
#include "common.h"

#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

static unsigned char *page;
static int go_pipe[2];
static volatile int went;

static int child_rx(void *arg)
{
	char c;

	/* Its own copy of the table: a parent killed at the seize is EOF. */
	close(go_pipe[1]);
	if (arg && read(go_pipe[0], &c, 1) != 1)
		_exit(1);
	tw_mprotect("child_rx", page, tw_page(), TW_RX);
	_exit(0);
}

static int race_child(void *arg)
{
	(void)arg;
	usleep(rand() % 20000);
	if (went)
		tw_mprotect("race_rx", page, tw_page(), TW_RX);
	_exit(0);
}

static void *racer(void *arg)
{
	(void)arg;
	for (;;) {
		char *stack = malloc(65536);
		pid_t pid = clone(race_child, stack + 65536, CLONE_VM | CLONE_UNTRACED | SIGCHLD, NULL);

		if (pid > 0)
			waitpid(pid, NULL, 0);
		free(stack);
		if (went)
			return NULL;
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "before";
	char *stack = malloc(65536);
	char line[64];
	pid_t pid = -1;
	pthread_t t;

	tw_init();
	page = tw_mmap("code_map", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED || pipe(go_pipe) != 0)
		return 1;
	tw_put_code(page);
	if (strcmp(mode, "before") == 0)
		pid = clone(child_rx, stack + 65536, CLONE_VM | SIGCHLD, (void *)1);
	if (strcmp(mode, "race") == 0)
		pthread_create(&t, NULL, racer, NULL);
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	if (strcmp(mode, "before") == 0) {
		if (write(go_pipe[1], "x", 1) != 1)
			return 1;
	} else if (strcmp(mode, "untraced") == 0) {
		pid = clone(child_rx, stack + 65536, CLONE_VM | CLONE_UNTRACED | SIGCHLD, NULL);
		tw_step("untraced_clone", "clone", pid < 0 ? -1 : 0, pid < 0 ? errno : 0);
	} else if (strcmp(mode, "clone3") == 0) {
		struct clone_args args = {.flags = CLONE_UNTRACED, .exit_signal = SIGCHLD};

		pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
		if (pid == 0)
			_exit(0);
		tw_step("untraced_clone3", "clone3", pid < 0 ? -1 : 0, pid < 0 ? errno : 0);
	} else if (strcmp(mode, "race") == 0) {
		went = 1;
		pthread_join(t, NULL);
	}
	if (pid > 0)
		tw_wait_child("child", pid);
	if (tw_show_map("code", page) == 1)
		tw_run("code_call", page);
	return tw_done();
}
