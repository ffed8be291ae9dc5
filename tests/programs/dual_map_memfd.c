/*
 * dual-map: one memfd mapped twice, shared -- read+write at one address and
 * read+execute at another. Code written through the first runs through the second.
 */
#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	void *rw, *rx;
	int fd, rc;

	tw_init();
	fd = memfd_create("trampwatch-dual", MFD_CLOEXEC);
	tw_step("memfd_create", "memfd_create", fd, errno);
	if (fd < 0)
		return 1;
	rc = ftruncate(fd, (off_t)pg);
	tw_step("memfd_truncate", "ftruncate", rc, errno);
	if (rc < 0)
		return 1;
	rw = tw_mmap("rw_view_mmap", NULL, pg, TW_RW, MAP_SHARED, fd, 0);
	rx = tw_mmap("rx_view_mmap", NULL, pg, TW_RX, MAP_SHARED, fd, 0);
	if (rw != MAP_FAILED && rx != MAP_FAILED) {
		tw_put_code(rw);
		tw_run("dual_call", rx);
	}
	if (rw != MAP_FAILED)
		tw_munmap("rw_view_munmap", rw, pg);
	if (rx != MAP_FAILED)
		tw_munmap("rx_view_munmap", rx, pg);
	close(fd);
	return tw_done();
}
