/*
 * What a tracer cannot see through, each route in its own child and each
 * running fresh code natively (RAN <route>_call):
 *   io_uring      openat /proc/self/mem and write code through io_uring, whose
 *                 operations never pass through seccomp;
 *   userfaultfd   (the syscall, and /dev/userfaultfd's ioctl) UFFDIO_COPY code
 *                 into a never-writable r-x page on its first execution;
 *   remap         remap_file_pages of an executable shared file mapping onto
 *                 another page of the file (argv[1]: page 0 mov eax,7; ret,
 *                 page 1 the code blob);
 *   clone_untraced / clone3_untraced   a child no tracer follows runs W+X code;
 *   listener      the program's own seccomp filter sends mprotect to its own
 *                 listener, which answers CONTINUE: w-to-x unseen.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/audit.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

TW_DEFINE_PATCH_TARGET;

/* --- io_uring ---------------------------------------------------------------- */

struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ring_setup(struct ring *r)
{
	struct io_uring_params p = {0};
	char *sq, *cq;

	r->fd = (int)syscall(SYS_io_uring_setup, 4, &p);
	tw_step("uring_setup", "io_uring_setup", r->fd, errno);
	if (r->fd < 0)
		return -1;
	sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned), TW_RW, MAP_SHARED | MAP_POPULATE, r->fd,
		  IORING_OFF_SQ_RING);
	cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), TW_RW,
		  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), TW_RW, MAP_SHARED | MAP_POPULATE, r->fd,
		       IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
		return -1;
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

/* Submit one prepared SQE and wait for its completion; returns its result. */
static int ring_run(struct ring *r, const struct io_uring_sqe *sqe)
{
	unsigned tail = *r->sq_tail, head;
	int res;

	r->sqes[tail & *r->sq_mask] = *sqe;
	r->sq_array[tail & *r->sq_mask] = tail & *r->sq_mask;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(SYS_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return -errno;
	head = *r->cq_head;
	if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static void route_io_uring(void)
{
	struct io_uring_sqe sqe;
	struct ring r;
	int fd;

	if (ring_setup(&r) < 0)
		return;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_OPENAT;
	sqe.fd = AT_FDCWD;
	sqe.addr = (uintptr_t) "/proc/self/mem";
	sqe.open_flags = O_RDWR;
	fd = ring_run(&r, &sqe);
	tw_step_raw("uring_openat", "io_uring_enter", fd);
	if (fd < 0)
		return;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_WRITE;
	sqe.fd = fd;
	sqe.addr = (uintptr_t)TW_CODE;
	sqe.len = sizeof(TW_CODE);
	sqe.off = (uintptr_t)tw_patch_target;
	if (ring_run(&r, &sqe) == (int)sizeof(TW_CODE))
		tw_run("io_uring_call", (const void *)tw_patch_target);
}

/* --- userfaultfd ------------------------------------------------------------- */

static int uffd;
static void *uffd_page;

static void *uffd_handler(void *arg)
{
	struct uffd_msg msg;
	char *src = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)arg;
	tw_put_code(src);
	if (read(uffd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg) && msg.event == UFFD_EVENT_PAGEFAULT) {
		struct uffdio_copy copy = {.dst = (uintptr_t)uffd_page, .src = (uintptr_t)src, .len = tw_page()};

		ioctl(uffd, UFFDIO_COPY, &copy);
	}
	return NULL;
}

static void route_userfaultfd(int through_device)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg;
	pthread_t t;

	if (through_device) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		uffd = dev < 0 ? -1 : ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		tw_step("uffd_dev_ioctl", "ioctl", uffd, errno);
	} else {
		uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		tw_step("uffd_create", "userfaultfd", uffd, errno);
	}
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		return;
	/* never writable: the kernel fills it on the first fault */
	uffd_page = mmap(NULL, tw_page(), TW_RX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (uffd_page == MAP_FAILED)
		return;
	reg.range.start = (uintptr_t)uffd_page;
	reg.range.len = tw_page();
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return;
	pthread_create(&t, NULL, uffd_handler, NULL);
	tw_run(through_device ? "uffd_dev_call" : "uffd_call", uffd_page);
	pthread_join(t, NULL);
}

/* --- remap_file_pages ---------------------------------------------------------- */

static void route_remap(const char *path)
{
	/* read-write: the kernel keeps VM_SHARED, which remap_file_pages needs */
	int fd = open(path, O_RDWR | O_CLOEXEC);
	void *rx;
	long rc;

	if (fd < 0)
		return;
	rx = tw_mmap("remap_rx_mmap", NULL, tw_page(), TW_RX, MAP_SHARED, fd, 0);
	if (rx == MAP_FAILED)
		return;
	rc = syscall(SYS_remap_file_pages, rx, tw_page(), 0, 1, 0);
	tw_step("remap", "remap_file_pages", rc, errno);
	if (rc == 0)
		tw_run("remap_call", rx);
}

/* --- children no tracer follows -------------------------------------------------- */

static void wx_child(const char *label)
{
	char *p = mmap(NULL, tw_page(), TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED) {
		tw_put_code(p);
		tw_run(label, p);
	}
	_exit(0);
}

static void route_clone_untraced(int version3)
{
	long pid;

	if (version3) {
		struct clone_args args = {.flags = CLONE_UNTRACED, .exit_signal = SIGCHLD};

		pid = syscall(SYS_clone3, &args, sizeof(args));
	} else {
		pid = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
	}
	if (pid == 0)
		wx_child(version3 ? "clone3_untraced_call" : "clone_untraced_call");
	tw_step(version3 ? "clone3_untraced" : "clone_untraced", version3 ? "clone3" : "clone", pid, errno);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
}

/* --- a seccomp listener of the program's own ------------------------------------- */

static int listener = -1;

static void *answer(void *arg)
{
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;

	(void)arg;
	memset(&req, 0, sizeof(req));
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
		return NULL;
	memset(&resp, 0, sizeof(resp));
	resp.id = req.id;
	resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
	return NULL;
}

static void *wait_for_listener(void *arg)
{
	while (__atomic_load_n(&listener, __ATOMIC_ACQUIRE) < 0)
		usleep(1000);
	return answer(arg);
}

static void route_listener(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	pthread_t t;
	char *p;
	int fd;

	/* the answering thread exists before the filter, so its own calls are free */
	pthread_create(&t, NULL, wait_for_listener, NULL);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	p = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	tw_step("listener_filter", "seccomp", fd, errno);
	if (fd >= 0)
		__atomic_store_n(&listener, fd, __ATOMIC_RELEASE);
	if (p == MAP_FAILED)
		return;
	tw_put_code(p);
	if (tw_mprotect("listener_rx_mprotect", p, tw_page(), TW_RX) == 0)
		tw_run("listener_call", p);
	if (fd < 0)
		pthread_cancel(t);
	pthread_join(t, NULL);
}

int main(int argc, char **argv)
{
	static const char *const routes[] = {"io_uring", "userfaultfd", "dev_userfaultfd", "remap",
					     "clone_untraced", "clone3_untraced", "listener"};
	size_t i;

	tw_init();
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const char *r = routes[i];
		char label[64];
		pid_t pid;

		if (!strcmp(r, "remap") && argc < 2)
			continue;
		pid = fork();
		if (pid == 0) {
			if (!strcmp(r, "io_uring"))
				route_io_uring();
			else if (!strcmp(r, "userfaultfd"))
				route_userfaultfd(0);
			else if (!strcmp(r, "dev_userfaultfd"))
				route_userfaultfd(1);
			else if (!strcmp(r, "remap"))
				route_remap(argv[1]);
			else if (!strcmp(r, "clone_untraced"))
				route_clone_untraced(0);
			else if (!strcmp(r, "clone3_untraced"))
				route_clone_untraced(1);
			else
				route_listener();
			_exit(0);
		}
		snprintf(label, sizeof(label), "%s_child", r);
		tw_wait_child(label, pid);
	}
	return tw_done();
}
