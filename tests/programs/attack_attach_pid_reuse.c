/*
 * attack_attach_pid_reuse [FILLERS]: a thread number that `attach` listed
 * names another process by the time the seize acts on it (root: clone3's
 * set_tid in the initial pid namespace; ns_last_pid would do, racing
 * other forks on the host).
 *
 * The process makes FILLERS (default 400, a multiple of 8) idle threads and
 * 8 sacrificial threads, each sacrifice after an eighth of the fillers
 * (numbers ascending: the order /proc lists them and the seize takes them), and forks a helper (a process of its own,
 * outside what is attached) before it says READY. The helper spins on the
 * main thread's TracerPid: once the main thread is seized, the listing is
 * over and the seize is working up through the fillers; the helper wakes
 * the sacrificial threads (a futex in shared memory), they exit, and for
 * each, once its number is free, the helper makes a child with that number
 * (clone3 set_tid): the child (a "stray") takes the number the seize is
 * about to act on, and sleeps. After the line, the program waits for the helper, which reports
 * each stray it made (STEP stray_N take: the number was taken) and whether
 * a tracer holds it (STEP stray_N traced rc=TRACERPID, STATE in the label
 * line MAPS-free: `COUNT` is the number of strays some tracer holds), then
 * kills the strays.
 */
#include "common.h"

#include <linux/futex.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>

#define SACRIFICES 8
#define FILLERS 1500
#define THREADS (FILLERS + SACRIFICES)

struct shared {
	volatile pid_t tids[THREADS];	/* in the order made (ascending) */
	volatile int go;		/* a futex: the sacrifices may exit */
	volatile int done;		/* the line came (native runs) */
};

static struct shared *shared;
static pid_t main_tid;

static void wait_go(volatile int *go)
{
	while (!*go)
		syscall(SYS_futex, go, FUTEX_WAIT, 0, NULL, NULL, 0);
}

static void set_go(volatile int *go)
{
	*go = 1;
	syscall(SYS_futex, go, FUTEX_WAKE, SACRIFICES, NULL, NULL, 0);
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static int tracer_of(pid_t pid, pid_t tid, char *state)
{
	char path[64], line[256];
	int tracer = -1;
	FILE *f;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (state && strncmp(line, "State:", 6) == 0)
			sscanf(line + 6, " %c", state);
		if (strncmp(line, "TracerPid:", 10) == 0)
			tracer = atoi(line + 10);
	}
	fclose(f);
	return tracer;
}

/* Thread `index` (in the order made): an idle one, or a sacrifice (the
 * last SACRIFICES made) that exits when told. */
static void *thread(void *arg)
{
	int index = (int)(intptr_t)arg;

	shared->tids[index] = gettid_();
	if (index >= FILLERS)
		wait_go(&shared->go);
	else
		for (;;)
			pause();
	return NULL;
}

/* A child numbered `want` (clone3's set_tid, root: no other fork on the
 * host can take the number in between); -1 when it is taken. */
static pid_t fork_as(pid_t want)
{
	struct clone_args args = {.exit_signal = SIGCHLD, .set_tid = (uintptr_t)&want, .set_tid_size = 1};

	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static void helper(int report_fd)
{
	pid_t strays[SACRIFICES] = {0};
	char label[32], state;
	int i, held = 0;

	/* Once the main thread is seized the listing is over and the seize
	 * works up through the fillers, the sacrifices last. */
	while (!shared->done && tracer_of(main_tid, 0, NULL) <= 0)
		;
	set_go(&shared->go);
	for (i = 0; i < SACRIFICES; i++) {
		pid_t want = shared->tids[FILLERS + i], got;
		time_t give_up;

		give_up = time(NULL) + 2;
		while (kill(want, 0) == 0 && time(NULL) < give_up)
			;
		got = fork_as(want);
		if (got == 0) {
			for (;;)
				pause();
		}
		strays[i] = got;
		snprintf(label, sizeof(label), "stray_%d", i);
		tw_step(label, "take", got < 0 ? -1 : 0, got < 0 ? errno : 0);
	}
	/* The main program says when to look (after the attach is done). */
	if (read(report_fd, label, 1) < 0)
		label[0] = 0;
	for (i = 0; i < SACRIFICES; i++) {
		int tracer;

		if (strays[i] <= 0)
			continue;
		state = '?';
		tracer = tracer_of(strays[i], 0, &state);
		snprintf(label, sizeof(label), "stray_%d_%c", i, state);
		tw_step(label, "traced", tracer, 0);
		held += tracer > 0;
		kill(strays[i], SIGKILL);
		waitpid(strays[i], NULL, 0);
	}
	tw_emit("COUNT %d", held);
	_exit(0);
}

int main(void)
{
	pthread_t t;
	char line[64];
	int report[2];
	pid_t helper_pid;
	long i;

	tw_init();
	main_tid = getpid();
	shared = mmap(NULL, sizeof(*shared), TW_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED || pipe(report) != 0)
		return 1;
	for (i = 0; i < THREADS; i++)
		if (pthread_create(&t, NULL, thread, (void *)(intptr_t)i) != 0)
			return 1;
	for (i = 0; i < THREADS; i++)
		while (!shared->tids[i])
			;
	helper_pid = fork();
	if (helper_pid == 0) {
		close(report[1]);
		helper(report[0]);
	}
	close(report[0]);
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	shared->done = 1; /* natively (no tracer came) the helper goes on now */
	if (write(report[1], "x", 1) != 1)
		return 1;
	tw_wait_child("helper", helper_pid);
	return tw_done();
}
