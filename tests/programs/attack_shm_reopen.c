/*
 * attack_shm_reopen [write|mmap]: a System V segment written through a
 * descriptor, not through an attach.
 *
 * A fresh segment is attached read-only (SHM_RDONLY): no view of it was
 * ever writable. Its /proc/self/map_files link is opened read-write (root:
 * map_files needs CAP_SYS_ADMIN), which gives a descriptor of the segment's
 * own shmem file; the code goes in with pwrite (`write`) or through a
 * shared read-write mmap of that descriptor (`mmap`). The read-only attach
 * is then made read+execute and called: it shows the code.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv)
{
	size_t page = tw_page();
	int by_mmap = argc > 1 && strcmp(argv[1], "mmap") == 0;
	char link[128];
	void *view, *rw;
	int id, fd, rc;

	tw_init();
	id = shmget(IPC_PRIVATE, page, IPC_CREAT | 0600);
	tw_step("shmget", "shmget", id, errno);
	if (id < 0)
		return 3;
	view = shmat(id, NULL, SHM_RDONLY);
	tw_step_addr("ro_shmat", "shmat", view, (void *)-1, errno);
	shmctl(id, IPC_RMID, NULL);
	if (view == (void *)-1)
		return 3;
	snprintf(link, sizeof(link), "/proc/self/map_files/%lx-%lx", (unsigned long)(uintptr_t)view,
		 (unsigned long)(uintptr_t)view + page);
	fd = open(link, O_RDWR | O_CLOEXEC);
	tw_step("reopen_rw", "openat", fd, errno);
	if (fd < 0)
		return tw_done();
	if (by_mmap) {
		rw = tw_mmap("reopen_rw_mmap", NULL, page, TW_RW, MAP_SHARED, fd, 0);
		if (rw == MAP_FAILED)
			return tw_done();
		tw_put_code(rw);
	} else {
		rc = (int)pwrite(fd, TW_CODE, sizeof(TW_CODE), 0);
		tw_step("reopen_pwrite", "pwrite64", rc, errno);
	}
	if (tw_mprotect("ro_view_rx_mprotect", view, page, TW_RX) == 0)
		tw_run("shm_reopen_call", view);
	return tw_done();
}
