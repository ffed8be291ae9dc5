/*
 * Races between threads of one address space (issue 10, route 5). Page T is
 * a clean private file mapping: making it read+execute is no W^X event. While
 * thread A makes T read+execute, thread B replaces T with code written
 * elsewhere -- by mremap of a written anonymous page onto T ("mremap"), or by
 * a MAP_FIXED mmap of a memfd holding code ("memfd"). A tracer that judges A's
 * mprotect from a model B's call has not updated yet lets the code run.
 *
 * usage: mem_race mremap|memfd ROUNDS [vm]. With "vm", B is no thread but a
 * process made by clone(CLONE_VM): same address space, its own pid and
 * descriptor table. Each round: B attacks, A waits a
 * varying moment then mprotects T read+execute; then, with B parked, A runs T
 * if it is executable and holds the code (RAN once, then the program stops).
 * COUNT is the number of rounds in which A, right after a successful mprotect,
 * saw T read+execute and holding the code (a racy look: B may still be busy).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

static pthread_barrier_t barrier;
static unsigned char *target;
static int exe_fd, code_fd;
static int use_memfd;
static long rounds;

static void reset_target(void)
{
	if (mmap(target, tw_page(), PROT_READ, MAP_PRIVATE | MAP_FIXED, exe_fd, 0) == MAP_FAILED)
		_exit(4);
}

static void *attacker(void *arg)
{
	size_t pg = tw_page();

	(void)arg;
	for (long i = 0; i < rounds; i++) {
		pthread_barrier_wait(&barrier);
		if (use_memfd) {
			mmap(target, pg, PROT_READ, MAP_SHARED | MAP_FIXED, code_fd, 0);
		} else {
			unsigned char *w = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (w != MAP_FAILED) {
				tw_put_code(w);
				if (mremap(w, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, target) == MAP_FAILED)
					munmap(w, pg);
			}
		}
		pthread_barrier_wait(&barrier); /* A has tried its mprotect */
		pthread_barrier_wait(&barrier); /* A has looked at T */
		reset_target();
	}
	return NULL;
}

static int attacker_process(void *arg)
{
	attacker(arg);
	return 0;
}

static int holds_code_rx(const unsigned char *p)
{
	struct tw_map m;

	return tw_find_map(p, &m) == 0 && strncmp(m.perms, "r-x", 3) == 0 && memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0;
}

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	pthread_t thread;
	pid_t child = -1;
	long won = 0;
	int ran = 0;

	tw_init();
	if (argc < 2) {
		fprintf(stderr, "usage: %s mremap|memfd ROUNDS\n", argv[0]);
		return 2;
	}
	use_memfd = strcmp(argv[1], "memfd") == 0;
	rounds = tw_count_arg(argc, argv, 2, "mremap|memfd ROUNDS");
	exe_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	code_fd = memfd_create("code", MFD_CLOEXEC);
	if (exe_fd < 0 || code_fd < 0 || ftruncate(code_fd, (off_t)pg) != 0 ||
	    pwrite(code_fd, TW_CODE, sizeof(TW_CODE), 0) != (ssize_t)sizeof(TW_CODE))
		return 1;
	target = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, exe_fd, 0);
	if (target == MAP_FAILED)
		return 1;
	pthread_barrier_init(&barrier, NULL, 2);
	if (argc > 3 && strcmp(argv[3], "vm") == 0) {
		size_t stack_size = 1 << 20;
		char *stack = malloc(stack_size);

		child = stack ? clone(attacker_process, stack + stack_size, CLONE_VM | SIGCHLD, NULL) : -1;
		if (child < 0)
			return 1;
	} else {
		pthread_create(&thread, NULL, attacker, NULL);
	}
	for (long i = 0; i < rounds; i++) {
		pthread_barrier_wait(&barrier);
		/* A varying moment: sometimes before B's call, sometimes during, sometimes after. */
		for (volatile long spin = 0; spin < (i * 7919) % 20000; spin++)
			;
		if (mprotect(target, pg, TW_RX) == 0 && holds_code_rx(target))
			won++;
		pthread_barrier_wait(&barrier);
		if (!ran && holds_code_rx(target)) {
			tw_run("race_call", target);
			ran = 1;
		}
		pthread_barrier_wait(&barrier);
	}
	if (child > 0)
		waitpid(child, NULL, 0);
	else
		pthread_join(thread, NULL);
	tw_emit("COUNT %ld", won);
	return tw_done();
}
