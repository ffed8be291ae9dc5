/* Benchmark workloads on one page:
 *   flip_flood wx N          N x mprotect RW -> RX -> RW (every RX is a W^X event: w-to-x)
 *   flip_flood hist N        one RX mapping first (exec history), then N x RW <-> R flips
 *   flip_flood burst N B     as hist, in bursts of B flips 100 ms apart (so a
 *                            monitor's consumer drains its buffer in between);
 *                            prints the calls and the seconds spent inside bursts
 * Prints the number of mprotect calls made.                                  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void flips(char *p, long n, int second)
{
	for (long i = 0; i < n; i++) {
		mprotect(p, 4096, second);
		mprotect(p, 4096, PROT_READ | PROT_WRITE);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int burst = !strcmp(mode, "burst");
	long n, size = 0;
	char *p;

	if ((argc != 3 || (strcmp(mode, "wx") && strcmp(mode, "hist"))) && (argc != 4 || !burst)) {
		fprintf(stderr, "usage: %s wx|hist N | burst N B\n", argv[0]);
		return 2;
	}
	n = atol(argv[2]);
	if (burst && (size = atol(argv[3])) <= 0)
		return 2;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	if (mode[0] != 'w' && mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
		return 1;
	if (!burst) {
		flips(p, n, mode[0] == 'w' ? PROT_READ | PROT_EXEC : PROT_READ);
		printf("%ld\n", 2 * n);
		return 0;
	}
	double inside = 0;
	struct timespec pause = {0, 100 * 1000 * 1000};

	for (long done = 0; done < n; done += size) {
		long todo = n - done < size ? n - done : size;
		double start = now();

		flips(p, todo, PROT_READ);
		inside += now() - start;
		nanosleep(&pause, NULL);
	}
	printf("%ld %.9f\n", 2 * n, inside);
	return 0;
}
