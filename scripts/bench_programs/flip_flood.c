/* Benchmark workloads on one page, N times:
 *   flip_flood wx N     mprotect RW -> RX -> RW (every RX is a W^X event: w-to-x)
 *   flip_flood hist N   one RX mapping first (exec history), then RW <-> R flips
 * Prints the number of mprotect calls made.                                  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	long n, i, calls = 0;
	char *p;

	if (argc != 3 || (strcmp(argv[1], "wx") && strcmp(argv[1], "hist"))) {
		fprintf(stderr, "usage: %s wx|hist N\n", argv[0]);
		return 2;
	}
	n = atol(argv[2]);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	if (argv[1][0] == 'h' && mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
		return 1;
	for (i = 0; i < n; i++) {
		int second = argv[1][0] == 'w' ? PROT_READ | PROT_EXEC : PROT_READ;

		mprotect(p, 4096, second);
		mprotect(p, 4096, PROT_READ | PROT_WRITE);
		calls += 2;
	}
	printf("%ld\n", calls);
	return 0;
}
