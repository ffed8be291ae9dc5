/* Load: N mprotect flips of one page between read+write and read-only. Prints COUNT of calls made. */
#include "common.h"

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	size_t pg = tw_page();
	int failed = 0;
	long i;
	void *p;

	tw_init();
	p = tw_mmap("flood_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (i = 0; i < n; i++) {
		/* Odd calls go to read-only, even calls back to read+write. */
		if (mprotect(p, pg, (i & 1) ? TW_RW : PROT_READ) < 0 && !failed) {
			failed = 1;
			tw_step("flood_mprotect", "mprotect", -1, errno);
		}
	}
	tw_emit("COUNT %ld", n);
	tw_munmap("flood_munmap", p, pg);
	return tw_done();
}
