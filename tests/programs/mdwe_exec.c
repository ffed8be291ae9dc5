/*
 * Ground truth wrapper: mdwe_exec PROG ARGS... turns on the kernel's
 * Memory-Deny-Write-Execute (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) and
 * execvp's PROG, which inherits it. Exits 125 if MDWE cannot be set, 127 if
 * PROG cannot be run. Prints nothing on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Linux 6.3 UAPI; older libc headers lack them. */
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif
#ifndef PR_GET_MDWE
#define PR_GET_MDWE 66
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN (1UL << 0)
#endif

int main(int argc, char **argv)
{
	int got;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARGS...]\n", argv[0]);
		return 2;
	}
	if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0L, 0L, 0L) < 0) {
		fprintf(stderr, "%s: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) failed: %s "
			"(needs Linux 6.3 or later)\n", argv[0], strerror(errno));
		return 125;
	}
	got = prctl(PR_GET_MDWE, 0L, 0L, 0L, 0L);
	if (got < 0 || !(got & PR_MDWE_REFUSE_EXEC_GAIN)) {
		fprintf(stderr, "%s: PR_GET_MDWE does not report REFUSE_EXEC_GAIN after setting it "
			"(got %d, %s)\n", argv[0], got, got < 0 ? strerror(errno) : "no error");
		return 125;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "%s: cannot run %s: %s\n", argv[0], argv[1], strerror(errno));
	return 127;
}
