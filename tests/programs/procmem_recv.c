/*
 * foreign-write through a /proc/PID/mem descriptor this process never opened:
 * an untraced helper (mem_fd_server, socket path argv[1]) opens our mem file
 * and hands it over, (1) with SCM_RIGHTS (recvmsg), (2) by pidfd_getfd of the
 * helper's own descriptor. Each route, in its own child, pwrites TW_CODE
 * over tw_patch_target and calls it (RAN <route>_call).
 */
#include "common.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

TW_DEFINE_PATCH_TARGET;

static int connect_to(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -1;
	return s;
}

/* Receive the helper's message; returns the SCM_RIGHTS descriptor (or -1), fills data. */
static int receive(const char *label, int s, int data[2])
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = data, .iov_len = 2 * sizeof(int)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cmsg;
	ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
	int fd = -1;

	tw_step(label, "recvmsg", n, errno);
	if (n < 0)
		return -1;
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg))
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

static void patch_and_run(const char *label, int fd)
{
	if (pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) == (ssize_t)sizeof(TW_CODE))
		tw_run(label, (const void *)tw_patch_target);
}

static void route(const char *sock, int by_pidfd)
{
	int data[2] = {-1, -1}, s = connect_to(sock), fd;

	if (s < 0) {
		tw_step("connect", "connect", -1, errno);
		_exit(1);
	}
	fd = receive(by_pidfd ? "pidfd_recv" : "rights_recv", s, data);
	if (by_pidfd) {
		int pidfd = (int)syscall(SYS_pidfd_open, data[0], 0);

		if (fd >= 0)
			close(fd);
		fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, data[1], 0);
		tw_step("getfd", "pidfd_getfd", fd, errno);
	} else {
		tw_step("scm_rights", "recvmsg", fd, fd < 0 ? EBADF : 0);
	}
	if (fd >= 0)
		patch_and_run(by_pidfd ? "pidfd_getfd_call" : "scm_rights_call", fd);
	close(s);
	_exit(0);
}

int main(int argc, char **argv)
{
	int by_pidfd;

	tw_init();
	if (argc < 2) {
		fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
		return 2;
	}
	for (by_pidfd = 0; by_pidfd < 2; by_pidfd++) {
		pid_t pid = fork();

		if (pid == 0)
			route(argv[1], by_pidfd);
		tw_wait_child(by_pidfd ? "pidfd_child" : "rights_child", pid);
	}
	return tw_done();
}
