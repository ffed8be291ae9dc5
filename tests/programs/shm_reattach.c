/*
 * System V shm history (issue 10, route 8): code is written through a
 * read+write attach, which is detached; the segment is attached again
 * read-only and that attach made read+execute. No view is ever writable and
 * executable at once, and no two views exist together: only the segment's
 * history shows that the code was written.
 */
#include "common.h"

#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
	void *rw, *ro;
	int id, rc;

	tw_init();
	id = shmget(IPC_PRIVATE, tw_page(), IPC_CREAT | 0600);
	tw_step("shm_get", "shmget", id, errno);
	if (id < 0)
		return 1;
	rw = shmat(id, NULL, 0);
	tw_step_addr("shm_rw_attach", "shmat", rw, (void *)-1, errno);
	if (rw == (void *)-1)
		return 1;
	tw_put_code(rw);
	rc = shmdt(rw);
	tw_step("shm_rw_detach", "shmdt", rc, errno);
	ro = shmat(id, NULL, SHM_RDONLY);
	tw_step_addr("shm_ro_attach", "shmat", ro, (void *)-1, errno);
	if (ro != (void *)-1 && tw_mprotect("shm_ro_rx_mprotect", ro, tw_page(), TW_RX) == 0)
		tw_run("shm_reattached_call", ro);
	rc = shmctl(id, IPC_RMID, NULL);
	tw_step("shm_remove", "shmctl", rc, errno);
	return tw_done();
}
