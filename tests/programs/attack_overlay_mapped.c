/*
 * attack_overlay_mapped DIR [early|layer]: a file mapped executable, then
 * written through an overlay whose upper layer holds it, or the other way.
 *
 * DIR holds lower/, upper/code (a page of 0xcc written before the run),
 * work/ and merged/. The program maps upper/code private R-X (a clean
 * file of an old filesystem), then, in a mount namespace of its own,
 * mounts an overlay of lower/ and upper/ on merged/ and opens
 * merged/code for writing: stat of that descriptor gives the overlay's
 * device, not the upper file's, though every write lands in the upper
 * file's page cache, which the private mapping shows (no page of it was
 * copied). The code is pwritten at offset 0 and the mapped page called.
 * `early`: merged/code is opened for writing first, upper/code mapped
 * R-X next (nothing written yet: its time stamps are still old), and the
 * code written through the earlier descriptor last. `layer`: DIR/merged is
 * an overlay of DIR/lower and DIR/upper mounted before the run;
 * merged/code (upper/code seen through the overlay: the overlay's device)
 * is mapped R-X and upper/code itself opened for writing and written.
 * Needs root (mount namespaces, overlayfs).
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>

static int mount_overlay(const char *dir)
{
	char path[512], opts[1024];
	int rc = unshare(CLONE_NEWNS);

	if (rc == 0)
		rc = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (rc == 0) {
		snprintf(opts, sizeof(opts), "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir);
		snprintf(path, sizeof(path), "%s/merged", dir);
		rc = mount("overlay", path, "overlay", 0, opts);
	}
	tw_step("ovl_mount", "mount", rc, errno);
	return rc;
}

static int open_for_writing(const char *dir, const char *sub)
{
	char path[512], label[64];
	int fd;

	snprintf(path, sizeof(path), "%s/%s/code", dir, sub);
	snprintf(label, sizeof(label), "%s_write_open", sub);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	tw_step(label, "openat", fd, errno);
	return fd;
}

static void *map_file(const char *dir, const char *sub)
{
	char path[512], label[64];
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/%s/code", dir, sub);
	snprintf(label, sizeof(label), "%s_open", sub);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	tw_step(label, "openat", fd, errno);
	if (fd < 0)
		return MAP_FAILED;
	snprintf(label, sizeof(label), "%s_rx_mmap", sub);
	p = tw_mmap(label, NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, 0);
	close(fd);
	return p;
}

int main(int argc, char **argv)
{
	int early = argc == 3 && strcmp(argv[2], "early") == 0;
	int layer = argc == 3 && strcmp(argv[2], "layer") == 0;
	void *p = MAP_FAILED;
	int fd = -1, rc;

	tw_init();
	if (argc != 2 && !early && !layer) {
		fprintf(stderr, "usage: %s DIR [early|layer]\n", argv[0]);
		return 2;
	}
	if (layer) {
		p = map_file(argv[1], "merged");
		if (p != MAP_FAILED)
			fd = open_for_writing(argv[1], "upper");
	} else if (early) {
		if (mount_overlay(argv[1]) != 0)
			return 3;
		fd = open_for_writing(argv[1], "merged");
		if (fd >= 0)
			p = map_file(argv[1], "upper");
	} else {
		p = map_file(argv[1], "upper");
		if (p != MAP_FAILED) {
			if (mount_overlay(argv[1]) != 0)
				return 3;
			fd = open_for_writing(argv[1], "merged");
		}
	}
	if (fd < 0 || p == MAP_FAILED)
		return tw_done();
	rc = (int)pwrite(fd, TW_CODE, sizeof(TW_CODE), 0);
	tw_step("code_pwrite", "pwrite64", rc, errno);
	close(fd);
	if (memcmp(p, TW_CODE, sizeof(TW_CODE)) == 0)
		tw_run("overlay_mapped_call", p);
	return tw_done();
}
