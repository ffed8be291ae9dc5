/*
 * dual-map through files with no name on disk: an O_TMPFILE file, then a
 * named temp file unlinked before use. Each is mapped shared read+write and
 * read+execute; code written through one view runs through the other.
 * The directory is $TMPDIR, or /tmp.
 */
#include "common.h"

#include <fcntl.h>

static void dual_map(const char *prefix, int fd)
{
	size_t pg = tw_page();
	char label[64];
	void *rw, *rx;
	int rc;

	rc = ftruncate(fd, (off_t)pg);
	snprintf(label, sizeof(label), "%s_truncate", prefix);
	tw_step(label, "ftruncate", rc, errno);
	if (rc < 0)
		return;
	snprintf(label, sizeof(label), "%s_rw_mmap", prefix);
	rw = tw_mmap(label, NULL, pg, TW_RW, MAP_SHARED, fd, 0);
	snprintf(label, sizeof(label), "%s_rx_mmap", prefix);
	rx = tw_mmap(label, NULL, pg, TW_RX, MAP_SHARED, fd, 0);
	if (rw != MAP_FAILED && rx != MAP_FAILED) {
		tw_put_code(rw);
		snprintf(label, sizeof(label), "%s_call", prefix);
		tw_run(label, rx);
	}
	if (rw != MAP_FAILED)
		munmap(rw, pg);
	if (rx != MAP_FAILED)
		munmap(rx, pg);
}

int main(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd, rc;

	tw_init();
	if (!dir || !*dir)
		dir = "/tmp";

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0700);
	tw_step("tmpfile_open", "open", fd, errno);
	if (fd >= 0) {
		dual_map("tmpfile", fd);
		close(fd);
	}

	snprintf(path, sizeof(path), "%s/trampwatch-dual-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	tw_step("unlinked_open", "open", fd, errno);
	if (fd >= 0) {
		rc = unlink(path);
		tw_step("unlinked_unlink", "unlink", rc, errno);
		dual_map("unlinked", fd);
		close(fd);
	}
	return tw_done();
}
