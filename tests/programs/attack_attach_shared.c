/*
 * attack_attach_shared: shared memory written before a tracer attached,
 * read-only when it attaches, made executable after it.
 *
 *   shm_ro        a System V segment attached read-write, code written,
 *                 the attach made read-only (mprotect)
 *   shm_reattach  the same segment detached and attached SHM_RDONLY
 *   file_ro       a file (argv[2], default /tmp/tw_attach_shared) mapped
 *                 shared read-write, code written, mapping made read-only
 * READY, a line on stdin (a tracer attaches), then the view is made R-X
 * and the code called.
 */
#include "common.h"

#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "shm_ro";
	const char *path = argc > 2 ? argv[2] : "/tmp/tw_attach_shared";
	size_t pg = tw_page();
	char line[64];
	unsigned char *p;
	int id = -1;

	tw_init();
	if (!strncmp(mode, "shm", 3)) {
		id = shmget(IPC_PRIVATE, pg, IPC_CREAT | 0600);
		tw_step("shmget", "shmget", id, id < 0 ? errno : 0);
		p = shmat(id, NULL, 0);
		tw_step_addr("shmat_rw", "shmat", p, (void *)-1, errno);
		if (p == (void *)-1)
			return tw_done();
		tw_put_code(p);
		if (!strcmp(mode, "shm_reattach")) {
			shmdt(p);
			p = shmat(id, NULL, SHM_RDONLY);
			tw_step_addr("shmat_ro", "shmat", p, (void *)-1, errno);
			if (p == (void *)-1)
				return tw_done();
		} else {
			tw_mprotect("make_ro", p, pg, PROT_READ);
		}
		shmctl(id, IPC_RMID, NULL);
	} else {
		int fd;

		unlink(path);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0 || ftruncate(fd, (off_t)pg) != 0)
			return tw_done();
		p = tw_mmap("file_map", NULL, pg, TW_RW, MAP_SHARED, fd, 0);
		close(fd);
		if (p == MAP_FAILED)
			return tw_done();
		tw_put_code(p);
		tw_mprotect("make_ro", p, pg, PROT_READ);
	}
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	if (tw_mprotect("make_rx", p, pg, TW_RX) == 0)
		tw_run("rx_call", p);
	if (id < 0)
		unlink(path);
	tw_wait_if_asked(argc, argv);
	return tw_done();
}
