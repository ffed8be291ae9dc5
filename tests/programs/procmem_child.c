/*
 * foreign-write into another process: the parent opens /proc/CHILD/mem for
 * writing and replaces code in the child's read+execute text; the child then
 * calls it. No mapping is ever writable.
 */
#include "common.h"
#include <fcntl.h>

TW_DEFINE_PATCH_TARGET;

int main(void)
{
	int go[2], fd;
	pid_t child;
	char path[64];
	ssize_t n;

	tw_init();
	if (pipe(go) < 0)
		return 1;
	child = fork();
	if (child == 0) {
		char byte;

		close(go[1]);
		if (read(go[0], &byte, 1) == 1 && tw_patch_target() == TW_CODE_RESULT)
			tw_emit("RAN child_patched_call");
		_exit(0);
	}
	tw_step("child_fork", "fork", child, errno);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)child);
	fd = open(path, O_RDWR | O_CLOEXEC);
	tw_step("child_mem_open", "open", fd, errno);
	if (fd >= 0) {
		n = pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target);
		tw_step("child_mem_pwrite", "pwrite64", n, errno);
		close(fd);
	}
	if (write(go[1], "g", 1) != 1)
		return 1;
	tw_wait_child("patched", child);
	return tw_done();
}
