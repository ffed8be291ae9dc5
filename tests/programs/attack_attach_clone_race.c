/*
 * attack_attach_clone_race: a thread seized in the middle of a clone.
 *
 * The kernel decides whether a new thread is traced when its creator's
 * clone begins (is the creator traced?) and lists it in /proc/PID/task only
 * when the clone ends. A spawner thread keeps cloning threads whose clone
 * takes long between the two:
 *   uffd   CLONE_PIDFD, the pidfd stored into a page registered with a
 *          userfaultfd (missing pages) whose descriptor only a helper
 *          process holds; the helper serves each fault 0.3 s after it came
 *          (the clone waits in the kernel: no stop interrupts it)
 *   netns  CLONE_NEWNET: each clone makes a network namespace (~1 ms; a
 *          race, won now and then)
 * A tracer that seizes the spawner there and lists the threads before the
 * clone ends misses the new thread: it runs untraced. The spawner notes,
 * before each clone, whether it is traced; the first new thread whose
 * clone began untraced and that finds the leader traced (the attach came
 * during its clone) prints STEP untraced (rc: its tid), waits for the go
 * (a line on stdin, after the attach), makes a written anonymous page R-X
 * and calls it; whether a tracer seized it since is the tracer's to show.
 * The others exit at once.
 * READY <pid> comes once the spawner is cloning.
 */
#include "common.h"

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif
#define SLOTS 4096

static unsigned char *code;
static int *slots;
static volatile int go, stop, spawned, untraced;
static pid_t leader;

static int tracer_of(pid_t tid)
{
	char path[64], buf[2048];
	int fd, n;
	char *at;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)leader, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	at = strstr(buf, "TracerPid:");
	return at ? atoi(at + 10) : -1;
}

static int child(void *arg)
{
	pid_t self = (pid_t)syscall(SYS_gettid);

	if (!arg || tracer_of(leader) <= 0 || __sync_lock_test_and_set(&untraced, 1))
		return 0;
	tw_step("untraced", "gettid", self, 0);
	while (!go) {
		struct timespec ts = {0, 1000000};

		syscall(SYS_nanosleep, &ts, NULL);
	}
	if (tw_mprotect("untraced_rx", code, tw_page(), TW_RX) == 0)
		tw_run("untraced_call", code);
	return 0;
}

static void *spawner(void *arg)
{
	int extra = (intptr_t)arg ? CLONE_NEWNET : CLONE_PIDFD;
	size_t stack_size = 256 * 1024;
	char *stack = mmap(NULL, stack_size, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile pid_t ctid;
	pid_t self = (pid_t)syscall(SYS_gettid);

	while (!stop) {
		void *pidfd = extra == CLONE_PIDFD ? (char *)slots + (spawned % SLOTS) * tw_page() : NULL;
		/* Untraced now: the clone about to begin makes an untraced thread (unless a seize comes first). */
		void *began_untraced = tracer_of(self) == 0 ? (void *)1 : NULL;

		ctid = 1;
		spawned++;
		if (clone(child, stack + stack_size, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
			  CLONE_THREAD | CLONE_SYSVSEM | CLONE_CHILD_CLEARTID | extra, began_untraced, pidfd, NULL,
			  &ctid) < 0) {
			tw_step("clone", "clone", -1, errno);
			break;
		}
		while (ctid)
			syscall(SYS_futex, &ctid, 0 /* FUTEX_WAIT */, 1, NULL, NULL, 0);
		if (pidfd)
			close(*(int *)pidfd);
	}
	return NULL;
}

/* The helper process: serves each fault on `uffd` with a zero page 0.3 s after it came. */
static void serve(int uffd)
{
	struct uffd_msg msg;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (read(uffd, &msg, sizeof(msg)) == sizeof(msg)) {
		struct uffdio_zeropage zero = {{0, 0}, 0, 0};

		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		usleep(300000);
		zero.range.start = msg.arg.pagefault.address & ~(uint64_t)(tw_page() - 1);
		zero.range.len = tw_page();
		ioctl(uffd, UFFDIO_ZEROPAGE, &zero);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	int netns = argc > 1 && !strcmp(argv[1], "netns");
	char line[64];
	pthread_t t;

	tw_init();
	leader = getpid();
	if (!netns) {
		struct uffdio_api api = {UFFD_API, 0, 0};
		struct uffdio_register reg = {{0, SLOTS * tw_page()}, UFFDIO_REGISTER_MODE_MISSING, 0};
		int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		int rc;

		tw_step("uffd", "userfaultfd", uffd, errno);
		slots = tw_mmap("slots", NULL, SLOTS * tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		reg.range.start = (uintptr_t)slots;
		rc = ioctl(uffd, UFFDIO_API, &api);
		tw_step("uffd_api", "ioctl", rc, errno);
		rc = ioctl(uffd, UFFDIO_REGISTER, &reg);
		tw_step("uffd_register", "ioctl", rc, errno);
		if (rc < 0)
			return tw_done();
		if (fork() == 0)
			serve(uffd);
		close(uffd);
	}
	code = tw_mmap("code_map", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tw_put_code(code);
	pthread_create(&t, NULL, spawner, (void *)(intptr_t)netns);
	while (!spawned)
		usleep(1000);
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	go = 1;
	usleep(netns ? 50000 : 700000);
	stop = 1;
	pthread_join(t, NULL);
	return tw_done();
}
