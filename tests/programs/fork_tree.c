/*
 * Process tree: a forked child doing read+write mmap/munmap, a vfork+exec of
 * /bin/true, and a grandchild (through a middle child) that execs wx_map from
 * the same directory as this program. wx_map's own lines and DONE appear too.
 */
#include "common.h"

#include <libgen.h>
#include <limits.h>

static void plain_child(void)
{
	size_t pg = tw_page();
	pid_t pid = fork();
	void *p;

	if (pid == 0) {
		p = tw_mmap("child_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED)
			tw_munmap("child_munmap", p, pg);
		_exit(0);
	}
	tw_step("child_fork", "fork", pid, errno);
	if (pid > 0)
		tw_wait_child("child", pid);
}

static void vfork_true(void)
{
	pid_t pid = vfork();

	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	tw_step("true_vfork", "vfork", pid, errno);
	if (pid > 0)
		tw_wait_child("true_child", pid);
}

static void grandchild_wx_map(const char *wx_map)
{
	pid_t middle = fork();
	pid_t grandchild;

	if (middle == 0) {
		grandchild = fork();
		if (grandchild == 0) {
			execl(wx_map, "wx_map", (char *)NULL);
			_exit(127);
		}
		tw_step("grandchild_fork", "fork", grandchild, errno);
		if (grandchild < 0)
			_exit(1);
		_exit(tw_wait_child("grandchild", grandchild));
	}
	tw_step("middle_fork", "fork", middle, errno);
	if (middle > 0)
		tw_wait_child("middle", middle);
}

int main(void)
{
	char self[PATH_MAX], wx_map[PATH_MAX + 16];
	ssize_t n;

	tw_init();
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return 1;
	self[n] = '\0';
	snprintf(wx_map, sizeof(wx_map), "%s/wx_map", dirname(self));

	plain_child();
	vfork_true();
	grandchild_wx_map(wx_map);
	return tw_done();
}
