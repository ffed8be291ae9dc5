/*
 * Attack: write code into another traced process with process_vm_writev.
 * A child offers two pages and waits: its own r-x text (tw_patch_target) and
 * a read-write anonymous page. The parent writes the code blob into both.
 *   rx   the kernel refuses (process_vm_writev respects page protections:
 *        STEP pvm_rx process_vm_writev rc=-1 errno=EFAULT natively);
 *   rw   the write lands; the child then mprotects the page R-X and runs it
 *        (RAN pvm_rw_call natively).
 */
#define _GNU_SOURCE
#include <sys/uio.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

int main(void)
{
	int to_parent[2], to_child[2];
	char *page;
	pid_t pid;

	tw_init();
	page = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED || pipe(to_parent) != 0 || pipe(to_child) != 0)
		return 1;
	page[0] = 0; /* populated before the fork: the child's copy is its own */
	pid = fork();
	if (pid == 0) {
		char byte = 0;

		if (write(to_parent[1], "r", 1) != 1 || read(to_child[0], &byte, 1) != 1)
			_exit(1);
		if (tw_patch_target() == TW_CODE_RESULT)
			tw_emit("RAN pvm_rx_call");
		if (tw_mprotect("pvm_rw_mprotect", page, tw_page(), TW_RX) == 0)
			tw_run("pvm_rw_call", page);
		_exit(0);
	}
	{
		char byte;
		struct iovec local = {.iov_base = (void *)TW_CODE, .iov_len = sizeof(TW_CODE)};
		struct iovec rx = {.iov_base = (void *)(uintptr_t)tw_patch_target, .iov_len = sizeof(TW_CODE)};
		struct iovec rw = {.iov_base = page, .iov_len = sizeof(TW_CODE)};
		ssize_t n;

		if (read(to_parent[0], &byte, 1) != 1)
			return 1;
		n = process_vm_writev(pid, &local, 1, &rx, 1, 0);
		tw_step("pvm_rx", "process_vm_writev", n, errno);
		n = process_vm_writev(pid, &local, 1, &rw, 1, 0);
		tw_step("pvm_rw", "process_vm_writev", n, errno);
		if (write(to_child[1], "g", 1) != 1)
			return 1;
	}
	tw_wait_child("pvm_child", pid);
	return tw_done();
}
