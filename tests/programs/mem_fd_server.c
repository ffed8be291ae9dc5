/*
 * An untraced helper for procmem_recv: on a Unix socket (argv[1]) it accepts
 * clients one by one, opens /proc/<client pid>/mem for writing and sends the
 * descriptor with SCM_RIGHTS, with its own pid and descriptor number as data
 * (for pidfd_getfd). It keeps the descriptor until the client hangs up.
 * Prints READY 1 once listening; runs until killed.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int srv;

	tw_init();
	if (argc < 2)
		return 2;
	strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
	srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv < 0 || bind(srv, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(srv, 8) < 0)
		return 1;
	tw_emit("READY 1");
	for (;;) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		char path[64], byte;
		int client = accept4(srv, NULL, NULL, SOCK_CLOEXEC), mem, data[2];
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} control;
		struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
				     .msg_controllen = sizeof(control.buf)};
		struct cmsghdr *cmsg;

		if (client < 0)
			continue;
		if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			close(client);
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)cred.pid);
		mem = open(path, O_RDWR | O_CLOEXEC);
		data[0] = (int)getpid();
		data[1] = mem;
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &mem, sizeof(int));
		if (mem < 0)
			msg.msg_controllen = 0;
		sendmsg(client, &msg, 0);
		while (read(client, &byte, 1) > 0)
			;
		close(client);
		if (mem >= 0)
			close(mem);
	}
}
