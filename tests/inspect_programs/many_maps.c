/*
 * N page-sized mappings in one run of memory, alternately read+write and
 * read+execute (each holding the TW_CODE blob), so the kernel keeps N
 * separate regions. For measuring inspect on a large address space.
 *
 * Usage: many_maps N. Prints: ADDR base 0x..., COUNT N, READY.
 */
#include "common.h"

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	size_t pg = tw_page();
	unsigned char *base;
	long i;
	char c;

	tw_init();
	base = mmap(NULL, (size_t)n * pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		tw_emit("FAIL mmap");
		return 1;
	}
	for (i = 0; i < n; i++) {
		tw_put_code(base + i * pg);
		if (i % 2 && mprotect(base + i * pg, pg, TW_RX) < 0) {
			tw_emit("FAIL mprotect");
			return 1;
		}
	}
	tw_emit("ADDR base %#lx", (unsigned long)(uintptr_t)base);
	tw_emit("COUNT %ld", n);
	tw_emit("READY");
	if (read(STDIN_FILENO, &c, 1) < 0)
		return 1;
	return 0;
}
