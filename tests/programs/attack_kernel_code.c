/*
 * Code handed to the kernel to run as kernel code: a module image
 * (init_module from memory, finit_module from a file the program wrote) and
 * a kexec image. The images are not valid, so natively nothing is loaded
 * (the kernel answers ENOEXEC, EINVAL, EBADF after looking at them); under a
 * policy that refuses them the calls never reach the kernel (EPERM). Never
 * run with a valid image: a loaded module or kexec kernel outlives the test.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>

#include "common.h"

int main(void)
{
	char path[] = "/tmp/tw-module-XXXXXX";
	int fd = mkstemp(path);

	tw_init();
	if (fd < 0 || write(fd, TW_CODE, sizeof(TW_CODE)) != (ssize_t)sizeof(TW_CODE))
		return 1;
	unlink(path);
	tw_step_raw("module_init", "init_module", syscall(SYS_init_module, TW_CODE, sizeof(TW_CODE), "") < 0 ? -errno : 0);
	tw_step_raw("module_finit", "finit_module", syscall(SYS_finit_module, fd, "", 0) < 0 ? -errno : 0);
	/* An architecture no kernel has: refused before anything is touched. */
	tw_step_raw("kexec_load", "kexec_load", syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xffff0000UL) < 0 ? -errno : 0);
	tw_step_raw("kexec_file", "kexec_file_load",
		    syscall(SYS_kexec_file_load, -1, -1, 0UL, "", 0UL) < 0 ? -errno : 0);
	return tw_done();
}
