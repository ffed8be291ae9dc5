/* Load: a JIT's flips, N times: mprotect one written page read+execute, run it,
 * then read+write again. Every read+execute is a W^X event (w-to-x, anon-exec).
 * Prints COUNT of flips made. */
#include "common.h"

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	size_t pg = tw_page();
	int failed = 0;
	long i;
	void *p;

	tw_init();
	p = tw_mmap("jit_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	tw_put_code(p);
	for (i = 0; i < n; i++) {
		if ((mprotect(p, pg, TW_RX) < 0 || mprotect(p, pg, TW_RW) < 0) && !failed) {
			failed = 1;
			tw_step("jit_mprotect", "mprotect", -1, errno);
		}
	}
	tw_emit("COUNT %ld", n);
	return tw_done();
}
