/*
 * Attack: a System V segment written through a read-write attach, seen
 * again through views mremap made, which no shmat returned:
 *
 *   alias  mremap(old_size=0) of a read-only attach makes a second view of
 *          the segment at a new address; mprotect it R-X, run.
 *   moved  a read-only attach moved by mremap(MREMAP_MAYMOVE|MREMAP_FIXED)
 *          over a page of the program's own clean memory; mprotect it
 *          R-X, run.
 *
 * The writable attach stays (its write history belongs to the segment).
 */
#define _GNU_SOURCE
#include <sys/ipc.h>
#include <sys/shm.h>

#include "common.h"

static void try_exec(const char *label, void *view)
{
	char run[64];

	if (view == MAP_FAILED)
		return;
	snprintf(run, sizeof(run), "%s_rx", label);
	if (tw_mprotect(run, view, tw_page(), TW_RX) != 0)
		return;
	snprintf(run, sizeof(run), "%s_call", label);
	tw_run(run, view);
}

int main(void)
{
	size_t pg = tw_page();
	int id = shmget(IPC_PRIVATE, pg, IPC_CREAT | 0600);
	void *rw, *ro, *alias, *ro2, *target, *moved;

	tw_init();
	tw_step("shmget", "shmget", id, errno);
	if (id < 0)
		return tw_done();
	rw = shmat(id, NULL, 0);
	tw_step_addr("rw_attach", "shmat", rw, (void *)-1, errno);
	if (rw == (void *)-1)
		return tw_done();
	tw_put_code(rw);

	ro = shmat(id, NULL, SHM_RDONLY);
	tw_step_addr("ro_attach", "shmat", ro, (void *)-1, errno);
	if (ro != (void *)-1) {
		alias = mremap(ro, 0, pg, MREMAP_MAYMOVE);
		tw_step_addr("alias_mremap", "mremap", alias, MAP_FAILED, errno);
		try_exec("alias", alias);
	}

	ro2 = shmat(id, NULL, SHM_RDONLY);
	tw_step_addr("ro2_attach", "shmat", ro2, (void *)-1, errno);
	target = tw_mmap("target", NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro2 != (void *)-1 && target != MAP_FAILED) {
		moved = mremap(ro2, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, target);
		tw_step_addr("moved_mremap", "mremap", moved, MAP_FAILED, errno);
		try_exec("moved", moved);
	}
	shmctl(id, IPC_RMID, NULL);
	return tw_done();
}
