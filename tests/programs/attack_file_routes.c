/*
 * Attack: code reaches an executable mapping or an exec by ways other than
 * a plain write-then-mmap of one name. Each route runs in a child, all of
 * them, or the one named by argv[2]; argv[1] is a directory holding `clean`,
 * a file made before the run (never written by the tree) whose name the
 * routes that rename reuse:
 *   rename      code written into a fresh file, renamed over `clean`, and
 *               `clean` opened read-only and mapped R-X;
 *   exchange    the same with renameat2(RENAME_EXCHANGE);
 *   link        a hard link to the written file, opened read-only by it;
 *   ficlone     FICLONE of the written file into a second one (EOPNOTSUPP
 *               on filesystems without reflinks), that mapped R-X;
 *   sendfile    sendfile from the written file into a second one;
 *   insert      fallocate(FALLOC_FL_INSERT_RANGE) of a block in front of a
 *               written page, then COLLAPSE_RANGE it away again;
 *   dontunmap   private anonymous memory written, moved by
 *               mremap(MREMAP_DONTUNMAP), the new place made R-X;
 *   map_files   shared anonymous memory written, reopened read-only through
 *               /proc/self/map_files/START-END and mapped R-X from that;
 *   shm_files   the same with a System V segment written through an attach;
 *   opath       a copy of this program written, opened O_PATH and run with
 *               execveat(fd, "", AT_EMPTY_PATH) (prints RAN opath_call).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common.h"

#define BLOCK 4096

static char dir[200];

/* A call's result reported with its own errno (read after the call). */
static long step(const char *label, const char *syscall, long rc)
{
	tw_step(label, syscall, rc, errno);
	return rc;
}

static int written_file(const char *name, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (fd < 0 || pwrite(fd, TW_CODE, sizeof(TW_CODE), 0) != (ssize_t)sizeof(TW_CODE) ||
	    ftruncate(fd, BLOCK) != 0)
		return -1;
	return fd;
}

static void map_path_and_run(const char *route, const char *path)
{
	char label[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *rx;

	if (fd < 0)
		return;
	snprintf(label, sizeof(label), "%s_rx_mmap", route);
	rx = tw_mmap(label, NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, 0);
	if (rx == MAP_FAILED)
		return;
	snprintf(label, sizeof(label), "%s_call", route);
	tw_run(label, rx);
}

static void route_rename(int exchange)
{
	char path[256], clean[256];
	int fd = written_file("renamed", path, sizeof(path));

	if (fd < 0)
		return;
	close(fd);
	snprintf(clean, sizeof(clean), "%s/clean", dir);
	if (exchange)
		step("exchange_rename", "renameat2",
		     syscall(SYS_renameat2, AT_FDCWD, path, AT_FDCWD, clean, RENAME_EXCHANGE));
	else
		step("rename_rename", "rename", rename(path, clean));
	map_path_and_run(exchange ? "exchange" : "rename", clean);
}

static void route_link(void)
{
	char path[256], other[256];
	int fd = written_file("linked", path, sizeof(path));

	if (fd < 0)
		return;
	close(fd);
	snprintf(other, sizeof(other), "%s/other-name", dir);
	step("link_link", "link", link(path, other));
	unlink(path);
	map_path_and_run("link", other);
}

static void route_copy(int clone)
{
	char path[256], copy[256];
	int in = written_file(clone ? "clone-src" : "send-src", path, sizeof(path)), out;
	off_t off = 0;

	snprintf(copy, sizeof(copy), "%s/%s", dir, clone ? "clone-dst" : "send-dst");
	out = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in < 0 || out < 0)
		return;
	if (clone ? step("ficlone_ioctl", "ioctl", ioctl(out, FICLONE, in)) < 0
		  : step("sendfile_send", "sendfile", sendfile(out, in, &off, BLOCK)) < 0)
		return;
	close(out);
	map_path_and_run(clone ? "ficlone" : "sendfile", copy);
}

static void route_insert(void)
{
	char path[256];
	int fd = written_file("inserted", path, sizeof(path));

	if (fd < 0)
		return;
	step("insert_fallocate", "fallocate", fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, BLOCK));
	step("collapse_fallocate", "fallocate", fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, BLOCK));
	close(fd);
	map_path_and_run("insert", path);
}

static void route_dontunmap(void)
{
	size_t pg = tw_page();
	char *rw = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *moved;

	if (rw == MAP_FAILED)
		return;
	tw_put_code(rw);
	moved = mremap(rw, pg, pg, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	tw_step_addr("dontunmap_mremap", "mremap", moved, MAP_FAILED, errno);
	if (moved != MAP_FAILED && tw_mprotect("dontunmap_rx_mprotect", moved, pg, TW_RX) == 0)
		tw_run("dontunmap_call", moved);
}

static void map_files_and_run(const char *route, void *view)
{
	char path[128], label[64];
	struct tw_map m;
	void *rx;
	int fd;

	if (tw_find_map(view, &m) != 0)
		return;
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", m.start, m.end);
	snprintf(label, sizeof(label), "%s_open", route);
	fd = (int)step(label, "open", open(path, O_RDONLY | O_CLOEXEC));
	if (fd < 0)
		return;
	snprintf(label, sizeof(label), "%s_rx_mmap", route);
	rx = tw_mmap(label, NULL, tw_page(), TW_RX, MAP_SHARED, fd, 0);
	if (rx == MAP_FAILED)
		return;
	snprintf(label, sizeof(label), "%s_call", route);
	tw_run(label, rx);
}

static void route_map_files(void)
{
	char *rw = mmap(NULL, tw_page(), TW_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (rw == MAP_FAILED)
		return;
	tw_put_code(rw);
	map_files_and_run("map_files", rw);
}

static void route_shm_files(void)
{
	int id = shmget(IPC_PRIVATE, tw_page(), IPC_CREAT | 0600);
	char *rw;

	if (id < 0)
		return;
	rw = shmat(id, NULL, 0);
	shmctl(id, IPC_RMID, NULL);
	if (rw == (void *)-1)
		return;
	tw_put_code(rw);
	map_files_and_run("shm_files", rw);
}

static void route_opath(void)
{
	char path[256], buf[65536];
	char *argv[] = {"tw-opath", "--ran", "opath_call", NULL};
	char *envp[] = {NULL};
	int fd, in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	snprintf(path, sizeof(path), "%s/opath-copy", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (fd < 0 || in < 0)
		return;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			return;
	close(fd);
	fd = (int)step("opath_open", "open", open(path, O_PATH | O_CLOEXEC));
	if (fd < 0)
		return;
	step("opath_exec", "execveat", syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH));
}

int main(int argc, char **argv)
{
	static const char *routes[] = {"rename", "exchange", "link", "ficlone", "sendfile", "insert",
				       "dontunmap", "map_files", "shm_files", "opath"};

	tw_init();
	if (argc > 2 && strcmp(argv[1], "--ran") == 0) {
		tw_emit("RAN %s", argv[2]);
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [ROUTE]\n", argv[0]);
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		char label[64];
		pid_t pid;

		if (argc > 2 && strcmp(argv[2], routes[i]) != 0)
			continue;
		pid = fork();
		if (pid == 0) {
			const char *r = routes[i];

			if (!strcmp(r, "rename") || !strcmp(r, "exchange"))
				route_rename(!strcmp(r, "exchange"));
			else if (!strcmp(r, "link"))
				route_link();
			else if (!strcmp(r, "ficlone") || !strcmp(r, "sendfile"))
				route_copy(!strcmp(r, "ficlone"));
			else if (!strcmp(r, "insert"))
				route_insert();
			else if (!strcmp(r, "dontunmap"))
				route_dontunmap();
			else if (!strcmp(r, "map_files"))
				route_map_files();
			else if (!strcmp(r, "shm_files"))
				route_shm_files();
			else
				route_opath();
			_exit(0);
		}
		snprintf(label, sizeof(label), "%s_child", routes[i]);
		tw_wait_child(label, pid);
	}
	return tw_done();
}
