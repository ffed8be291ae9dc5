/*
 * Attack: shmdt detaches every mapping of the segment whose base is the
 * address given, even when the page at that address is no longer the
 * segment's. A clean (never writable) 512-page segment is attached
 * SHM_RDONLY at A (over a reserved range) with a MAP_GROWSDOWN page just
 * above it; its first page
 * is munmapped; shmdt(A) then removes the other 511 pages. A model that
 * looks for the segment at A only keeps them, clean. The GROWSDOWN region
 * grows into the gap on a write; that page is mprotected R-X and run: to the
 * stale model, a clean segment page gaining exec.
 */
#define _GNU_SOURCE
#include <sys/ipc.h>
#include <sys/shm.h>

#include "common.h"

#define SEG_PAGES 512

int main(void)
{
	size_t pg = tw_page();
	struct tw_map m;
	char *room, *seg, *grows, *below;
	int id, rc;

	tw_init();
	id = shmget(IPC_PRIVATE, SEG_PAGES * pg, IPC_CREAT | 0600);
	tw_step("shm_get", "shmget", id, errno);
	if (id < 0)
		return tw_done();
	room = tw_mmap("room_mmap", NULL, (SEG_PAGES + 1) * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (room == MAP_FAILED)
		return tw_done();
	seg = shmat(id, room, SHM_RDONLY | SHM_REMAP);
	shmctl(id, IPC_RMID, NULL);
	tw_step_addr("shm_ro_attach", "shmat", seg, (void *)-1, errno);
	if (seg == (void *)-1)
		return tw_done();
	grows = tw_mmap("growsdown_mmap", seg + SEG_PAGES * pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return tw_done();
	tw_munmap("first_page_munmap", seg, pg);
	rc = shmdt(seg);
	tw_step("rest_shmdt", "shmdt", rc, errno);
	tw_show_map("after_shmdt", seg + pg);
	below = grows - pg;
	tw_put_code(below); /* a fault below the GROWSDOWN region grows it */
	if (tw_find_map(below, &m) != 0 || m.perms[1] != 'w')
		return tw_done();
	tw_show_map("grown", below);
	if (tw_mprotect("grown_rx_mprotect", below, pg, TW_RX) == 0)
		tw_run("grown_call", below);
	return tw_done();
}
