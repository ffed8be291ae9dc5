/*
 * Attack: a mapping the kernel keeps out of children by itself. The parent
 * maps a perf ring buffer R-- (perf_mmap marks it VM_DONTCOPY, no madvise
 * asked) with a MAP_GROWSDOWN page just above. The forked child has no ring:
 * a gap below its copy of the GROWSDOWN region. A model that copies the
 * parent's address space for the child keeps the ring there, never
 * written. The child writes code one page below the GROWSDOWN region (the
 * kernel grows it into the gap), mprotects that page R-X and runs it: to
 * the stale model, a clean read-only page gaining exec. Exits 3 when perf
 * events cannot be opened here.
 */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <sys/syscall.h>

#include "common.h"

#define RING_PAGES 65 /* the header page and 2^6 data pages */

int main(void)
{
	struct perf_event_attr attr = { 0 };
	size_t pg = tw_page();
	struct tw_map m;
	char *ring, *grows;
	pid_t pid;
	int fd;

	tw_init();
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_DUMMY;
	attr.disabled = 1;
	fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	tw_step("perf_event_open", "perf_event_open", fd, errno);
	if (fd < 0)
		return 3;
	/* A reservation holds the ring and the page above it. */
	ring = tw_mmap("reserve_mmap", NULL, (RING_PAGES + 1) * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED)
		return 1;
	if (tw_mmap("ring_mmap", ring, RING_PAGES * pg, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		return 3;
	grows = tw_mmap("growsdown_mmap", ring + RING_PAGES * pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return 1;
	pid = fork();
	if (pid == 0) {
		char *below = grows - pg;

		tw_show_map("child_ring", ring);
		tw_put_code(below); /* a fault below the GROWSDOWN region grows it */
		if (tw_find_map(below, &m) != 0 || m.perms[1] != 'w')
			_exit(0);
		if (tw_mprotect("child_rx_mprotect", below, pg, TW_RX) == 0)
			tw_run("child_call", below);
		_exit(0);
	}
	tw_wait_child("child", pid);
	return tw_done();
}
