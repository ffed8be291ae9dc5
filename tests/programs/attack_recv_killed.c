/*
 * Attack: the receiver dies at its exit stop, before the tracer judges the
 * descriptor it received, and a process sharing its descriptor table keeps
 * it (attack_opener_killed's route through SCM_RIGHTS).
 *
 * The program makes C, a process sharing its descriptor table (clone
 * CLONE_FILES). C connects to mem_fd_server (socket path argv[1]), an
 * untraced helper that sends a descriptor of /proc/<C>/mem opened for
 * writing; K, a plain child, spins reading /proc/<program>/fd/<the number
 * the descriptor gets> and SIGKILLs the program the moment it names a mem
 * file. Main receives on C's connection (the table is shared). C spins on
 * the same number and, once it is a mem file, pwrites TW_CODE over its own
 * tw_patch_target through it and calls it (RAN recv_killed_call). The
 * program itself dies (natively too: K kills it).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

/* What C publishes for main: its connection and where the descriptor lands. */
struct shared {
	volatile int sock, next;
};

int main(int argc, char **argv)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	int data[2];
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct shared *shared;
	pid_t program = getpid(), sharer, killer;
	ssize_t n;

	tw_init();
	if (argc < 2) {
		fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
		return 2;
	}
	shared = mmap(NULL, tw_page(), TW_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return 1;
	shared->sock = shared->next = -1;
	sharer = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (sharer == 0) {
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), next;

		strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
		if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
			_exit(1);
		next = dup(0); /* the lowest free number: where the descriptor lands */
		close(next);
		shared->next = next;
		shared->sock = s;
		if (tw_wait_mem(getpid(), next, 5) &&
		    pwrite(next, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) ==
			    (ssize_t)sizeof(TW_CODE))
			tw_run("recv_killed_call", (const void *)tw_patch_target);
		_exit(0);
	}
	while (shared->sock < 0)
		usleep(1000);
	killer = fork();
	if (killer == 0) {
		if (tw_wait_mem(program, shared->next, 5))
			kill(program, SIGKILL);
		_exit(0);
	}
	usleep(100000); /* both spinning */
	n = recvmsg(shared->sock, &msg, 0);
	tw_step("killed_recv", "recvmsg", n, errno);
	/* Under a tracer that refused it, nobody kills the program: let the
	 * others end first, then say so. */
	tw_wait_child("sharer", sharer);
	tw_wait_child("killer", killer);
	return tw_done();
}
