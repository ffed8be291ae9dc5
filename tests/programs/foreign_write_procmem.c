/*
 * foreign-write: overwrite a function in the program's own read+execute text
 * through /proc/self/mem. The kernel forces the write (copy-on-write of the
 * file page) although no mapping is writable, then the new code runs.
 */
#include "common.h"

#include <fcntl.h>

TW_DEFINE_PATCH_TARGET;

int main(void)
{
	ssize_t n;
	int fd;

	tw_init();
	tw_step("target_before_call", "call", tw_patch_target(), 0);
	tw_show_map("target", (const void *)tw_patch_target);
	fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	tw_step("mem_open", "open", fd, errno);
	if (fd < 0)
		return 1;
	n = pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target);
	tw_step("mem_pwrite", "pwrite64", n, errno);
	close(fd);
	if (n == (ssize_t)sizeof(TW_CODE))
		tw_run("patched_call", (const void *)tw_patch_target);
	return tw_done();
}
