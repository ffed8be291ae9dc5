/*
 * Load: N getppid() calls, none of them a memory syscall. Under a seccomp
 * filter that stops only memory syscalls, these must cost no tracer stop.
 */
#include "common.h"

#include <sys/syscall.h>

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	long i;

	tw_init();
	/* syscall() so no libc caching can turn a call into no syscall at all. */
	for (i = 0; i < n; i++)
		syscall(SYS_getppid);
	tw_emit("COUNT %ld", n);
	return tw_done();
}
