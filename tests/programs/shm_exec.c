/*
 * shm-exec: System V shared memory attached with SHM_EXEC -- once read+write+
 * execute, then read+execute (SHM_RDONLY|SHM_EXEC) beside a plain read+write
 * attach of the same segment, so code written through one runs through the other.
 */
#include "common.h"

#include <sys/ipc.h>
#include <sys/shm.h>

static void *attach(const char *label, int id, int flags)
{
	void *p = shmat(id, NULL, flags);

	tw_step_addr(label, "shmat", p, (void *)-1, errno);
	return p;
}

static void detach(const char *label, void *p)
{
	int rc = shmdt(p);

	tw_step(label, "shmdt", rc, errno);
}

int main(void)
{
	void *rwx, *rx, *rw;
	int id, rc;

	tw_init();
	id = shmget(IPC_PRIVATE, tw_page(), IPC_CREAT | 0600);
	tw_step("shm_get", "shmget", id, errno);
	if (id < 0)
		return 1;

	rwx = attach("shm_rwx_attach", id, SHM_EXEC);
	if (rwx != (void *)-1) {
		tw_put_code(rwx);
		tw_run("shm_rwx_call", rwx);
		detach("shm_rwx_detach", rwx);
	}

	rx = attach("shm_rx_attach", id, SHM_RDONLY | SHM_EXEC);
	rw = attach("shm_rw_attach", id, 0);
	if (rx != (void *)-1 && rw != (void *)-1) {
		tw_put_code(rw);
		tw_run("shm_rx_call", rx);
	}
	if (rx != (void *)-1)
		detach("shm_rx_detach", rx);
	if (rw != (void *)-1)
		detach("shm_rw_detach", rw);

	rc = shmctl(id, IPC_RMID, NULL);
	tw_step("shm_remove", "shmctl", rc, errno);
	return tw_done();
}
