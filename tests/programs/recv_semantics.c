/*
 * Receives whose meaning the tracer must keep while it holds their siblings
 * (run natively and traced, the output must match). A sibling thread is the
 * peer, so every receive has a sibling to hold. Mode argv[1]:
 *   mmsg_all      blocking recvmmsg of 3 datagrams sent 100 ms apart (a
 *                 descriptor with the first): returns 3
 *   mmsg_timeout  recvmmsg, timeout 100 ms, datagrams at 0, 500, 1000 ms:
 *                 the kernel checks the timeout after each datagram: 2
 *   mmsg_eintr    blocking recvmmsg, nothing sent, SIGALRM (no SA_RESTART)
 *                 after 200 ms: EINTR
 *   int80_recvmsg i386 recvmsg (int $0x80, 64-bit stack), sent after 200 ms
 *   restart       blocking recvmsg, SIGALRM after 200 ms with SA_RESTART and a
 *                 handler that opens a file for writing, sent after 400 ms:
 *                 the handler runs, the receive restarts and gets the data
 *   socketcall_eintr  i386 socketcall(SYS_RECVMSG), SIGALRM after 200 ms: EINTR
 *   waitall       recvmsg MSG_WAITALL of 8 bytes on a stream, sent as 4+4
 *                 bytes 200 ms apart: 8
 *   waitall_rights  recvmsg MSG_WAITALL of 12 bytes (two iovecs, 6+6) on a
 *                 stream, sent as 4 bytes, then 4 with a descriptor, then 4,
 *                 200 ms apart: the kernel stops at the descriptor: 8
 */
#include "common.h"

#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>

static int sv[2];
static const char *mode;

static void *peer(void *unused)
{
	(void)unused;
	if (!strcmp(mode, "mmsg_all") || !strcmp(mode, "mmsg_timeout")) {
		int gap = !strcmp(mode, "mmsg_all") ? 100000 : 500000;

		for (int i = 0; i < 3; i++) {
			union {
				char buf[CMSG_SPACE(sizeof(int))];
				struct cmsghdr align;
			} control;
			int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			struct iovec iov = {.iov_base = &i, .iov_len = sizeof(i)};
			struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

			if (i == 0) {
				struct cmsghdr *cmsg;

				msg.msg_control = control.buf;
				msg.msg_controllen = sizeof(control.buf);
				cmsg = CMSG_FIRSTHDR(&msg);
				cmsg->cmsg_level = SOL_SOCKET;
				cmsg->cmsg_type = SCM_RIGHTS;
				cmsg->cmsg_len = CMSG_LEN(sizeof(int));
				memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
			}
			sendmsg(sv[1], &msg, 0);
			close(fd);
			usleep(gap);
		}
	} else if (!strcmp(mode, "int80_recvmsg")) {
		usleep(200000);
		send(sv[1], "datagram", 8, 0);
	} else if (!strcmp(mode, "restart")) {
		usleep(400000);
		send(sv[1], "restarted", 9, 0);
	} else if (!strcmp(mode, "waitall") || !strcmp(mode, "waitall_rights")) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} control;
		struct iovec iov = {.iov_base = "full", .iov_len = 4};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (!strcmp(mode, "waitall_rights")) {
			struct cmsghdr *cmsg;

			msg.msg_control = control.buf;
			msg.msg_controllen = sizeof(control.buf);
			cmsg = CMSG_FIRSTHDR(&msg);
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			cmsg->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
		}
		usleep(200000);
		send(sv[1], "half", 4, 0);
		usleep(200000);
		sendmsg(sv[1], &msg, 0);
		usleep(200000);
		send(sv[1], "more", 4, 0);
		close(fd);
	}
	return NULL;
}

static volatile int handler_opened = -2;

static void on_alarm(int sig)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	(void)sig;
	handler_opened = fd >= 0;
	if (fd >= 0)
		close(fd);
}

static long int80(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

/* recv(2) is recvfrom, which cannot carry descriptors: the tests use recvmsg. */
static ssize_t receive(int fd, void *buf, size_t len, int flags)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	return recvmsg(fd, &msg, flags);
}

struct msghdr32 {
	uint32_t name, namelen, iov, iovlen, control, controllen, flags;
};

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
	int stream = argc > 1 && !strncmp(argv[1], "waitall", 7);
	pthread_t thread;

	tw_init();
	if (argc < 2) {
		fprintf(stderr, "usage: %s MODE\n", argv[0]);
		return 2;
	}
	mode = argv[1];
	if (!strcmp(argv[1], "restart"))
		sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* the peer's last send may find the socket shut */
	socketpair(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0, sv);
	pthread_create(&thread, NULL, peer, NULL);
	if (!strcmp(mode, "mmsg_eintr") || !strcmp(mode, "socketcall_eintr") || !strcmp(mode, "restart"))
		setitimer(ITIMER_REAL, &(struct itimerval){.it_value = {.tv_usec = 200000}}, NULL);
	if (!strncmp(mode, "mmsg", 4)) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} control[3];
		int data[3] = {-1, -1, -1};
		struct iovec iov[3];
		struct mmsghdr m[3];
		struct timespec timeout = {.tv_nsec = 100000000};
		int n;

		for (int i = 0; i < 3; i++) {
			iov[i] = (struct iovec){.iov_base = &data[i], .iov_len = sizeof(int)};
			m[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1,
							    .msg_control = control[i].buf,
							    .msg_controllen = sizeof(control[i].buf)}};
		}
		n = recvmmsg(sv[0], m, 3, MSG_CMSG_CLOEXEC, !strcmp(mode, "mmsg_timeout") ? &timeout : NULL);
		tw_step("recv", "recvmmsg", n, errno);
		for (int i = 0; i < (n > 0 ? n : 0); i++)
			tw_emit("MSG %d data=%d len=%u rights=%d", i, data[i], m[i].msg_len,
				m[i].msg_hdr.msg_controllen > 0);
	} else if (!strcmp(mode, "restart")) {
		char buf[10] = "";
		ssize_t n = receive(sv[0], buf, 9, 0);

		tw_step("recv", "recvmsg", n, errno);
		tw_emit("DATA %s handler_opened=%d", buf, handler_opened);
	} else if (!strcmp(mode, "waitall")) {
		char buf[9] = "";
		ssize_t n = receive(sv[0], buf, 8, MSG_WAITALL);

		tw_step("recv", "recvmsg", n, errno);
		tw_emit("DATA %s", buf);
	} else if (!strcmp(mode, "waitall_rights")) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} control;
		char a[7] = "", b[7] = "";
		struct iovec iov[2] = {{.iov_base = a, .iov_len = 6}, {.iov_base = b, .iov_len = 6}};
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = control.buf,
				     .msg_controllen = sizeof(control.buf)};
		ssize_t n = recvmsg(sv[0], &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC);

		tw_step("recv", "recvmsg", n, errno);
		tw_emit("DATA %s|%s controllen=%zu iov=%s iovlen=%zu lens=%zu,%zu", a, b, (size_t)msg.msg_controllen,
			msg.msg_iov == iov ? "same" : "moved", (size_t)msg.msg_iovlen, iov[0].iov_len, iov[1].iov_len);
	} else {
		struct {
			struct msghdr32 hdr;
			uint32_t iov[2], block[3];
			char data[16];
		} *low = mmap(NULL, 4096, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
		long n;

		low->iov[0] = (uint32_t)(uintptr_t)low->data;
		low->iov[1] = 8;
		low->hdr = (struct msghdr32){.iov = (uint32_t)(uintptr_t)low->iov, .iovlen = 1};
		low->block[0] = (uint32_t)sv[0];
		low->block[1] = (uint32_t)(uintptr_t)&low->hdr;
		if (!strcmp(mode, "int80_recvmsg"))
			n = int80(372, sv[0], (long)(uintptr_t)&low->hdr, 0);
		else
			n = int80(102, 17, (long)(uintptr_t)low->block, 0);
		tw_step_raw("recv", mode, n);
		tw_emit("DATA %.8s", low->data);
	}
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(thread, NULL);
	return tw_done();
}
