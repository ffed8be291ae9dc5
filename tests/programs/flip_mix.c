/* Load: a JIT whose flips need the shadow model, N rounds, in a four-page
 * read+write mapping whose last page was once executable (one flip first).
 * Page a (the second page) goes RW -> R -> RX -> R -> RW: its R -> RX is a
 * W^X event only because the page was written before. Every 5th round page
 * b (the third) flips RW -> RX -> RW, changing a's neighbour; every 11th
 * round b is unmapped and mapped again (fresh history). Prints COUNT of
 * rounds made; the first failed call as a STEP. */
#include "common.h"

static int failed;

static void protect(void *p, size_t len, int prot)
{
	if (mprotect(p, len, prot) < 0 && !failed) {
		failed = 1;
		tw_step("flip_mprotect", "mprotect", -1, errno);
	}
}

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	size_t pg = tw_page();
	char *a, *b;
	long i;

	tw_init();
	a = tw_mmap("flip_mmap", NULL, 4 * pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return 1;
	protect(a + 3 * pg, pg, TW_RX);
	protect(a + 3 * pg, pg, TW_RW);
	a += pg;
	b = a + pg;
	tw_put_code(a);
	for (i = 0; i < n; i++) {
		protect(a, pg, PROT_READ);
		protect(a, pg, TW_RX);
		protect(a, pg, PROT_READ);
		protect(a, pg, TW_RW);
		if (i % 5 == 0) {
			protect(b, pg, TW_RX);
			protect(b, pg, TW_RW);
		}
		if (i % 11 == 0 && (munmap(b, pg) < 0 ||
				    mmap(b, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED))
			return 1;
	}
	tw_emit("COUNT %ld", n);
	return tw_done();
}
