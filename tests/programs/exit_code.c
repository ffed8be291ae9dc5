/* Exit codes: print DONE, then exit with N (0-255), so a tracer's exit status can be checked. */
#include "common.h"

int main(int argc, char **argv)
{
	long code = tw_count_arg(argc, argv, 1, "N");

	tw_init();
	if (code > 255) {
		fprintf(stderr, "%s: exit code must be 0-255, not %ld\n", argv[0], code);
		return 2;
	}
	tw_done();
	return (int)code;
}
