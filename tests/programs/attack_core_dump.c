/*
 * Attack: the kernel writes the file. A child puts code (and a marker) in an
 * anonymous page and dumps core (SIGABRT, RLIMIT_CORE unlimited, in a fresh
 * directory under /tmp). No process of the tree ever opens the core file for
 * writing: the kernel writes it while the child dies. The parent then maps
 * the core file's page holding the code R-X (a named file on disk) and runs
 * it. Needs core_pattern to name a file (not a pipe to a helper); otherwise
 * `STEP core_file find rc=-1 errno=ENOENT`.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "common.h"

static const char MARKER[] = "TRAMPWATCH-CORE!";

/* The first file in dir whose name starts with "core". */
static int open_core(const char *dir, char *path, size_t size)
{
	struct dirent *d;
	DIR *dp = opendir(dir);
	int fd = -1;

	if (!dp)
		return -1;
	while ((d = readdir(dp)) != NULL) {
		if (strncmp(d->d_name, "core", 4) == 0) {
			snprintf(path, size, "%s/%s", dir, d->d_name);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			break;
		}
	}
	closedir(dp);
	return fd;
}

int main(void)
{
	size_t pg = tw_page();
	char dir[] = "/tmp/tw_core_XXXXXX";
	char path[512], page[64];
	struct stat st;
	off_t off, found = -1;
	pid_t pid;
	void *p;
	int fd;

	tw_init();
	if (!mkdtemp(dir) || chdir(dir) != 0)
		return 1;
	pid = fork();
	if (pid == 0)
		tw_dump_code_core(MARKER, sizeof(MARKER));
	tw_wait_child("dumper", pid);
	fd = open_core(dir, path, sizeof(path));
	tw_step("core_file", "find", fd < 0 ? -1 : 0, fd < 0 ? ENOENT : 0);
	if (fd >= 0 && fstat(fd, &st) == 0) {
		for (off = 0; off + (off_t)pg <= st.st_size; off += (off_t)pg) {
			if (pread(fd, page, sizeof(page), off) == (ssize_t)sizeof(page) &&
			    memcmp(page, TW_CODE, sizeof(TW_CODE)) == 0 &&
			    memcmp(page + 16, MARKER, sizeof(MARKER)) == 0) {
				found = off;
				break;
			}
		}
		if (found >= 0) {
			p = tw_mmap("core_rx_mmap", NULL, pg, TW_RX, MAP_PRIVATE, fd, found);
			if (p != MAP_FAILED)
				tw_run("core_call", p);
		}
		close(fd);
		unlink(path);
	}
	if (chdir("/") == 0)
		rmdir(dir);
	return tw_done();
}
