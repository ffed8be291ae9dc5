/*
 * N page-sized anonymous mappings in one run of memory whose protections
 * cycle RW, RX, RWX, RX, RW, RWX, so every ordered pair of differing
 * neighbours occurs and the kernel keeps N separate regions; each page
 * holds the TW_CODE blob. For checking that inspect judges each region by
 * its own protection, not by its neighbours'.
 *
 * Usage: mixed_maps N. Prints: ADDR base 0x..., COUNT N, then READY
 * (after REFUSED <prot> <errno> when the kernel refuses a protection).
 */
#include "common.h"

static const int CYCLE[] = {TW_RW, TW_RX, TW_RWX, TW_RX, TW_RW, TW_RWX};

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	size_t pg = tw_page();
	size_t kinds = sizeof(CYCLE) / sizeof(CYCLE[0]);
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
		int prot = CYCLE[(size_t)i % kinds];

		tw_put_code(base + i * pg);
		if (prot != TW_RW && mprotect(base + i * pg, pg, prot) < 0) {
			tw_emit("REFUSED %s %s", prot == TW_RWX ? "rwx" : "rx", tw_errname(errno));
			break;
		}
	}
	tw_emit("ADDR base %#lx", (unsigned long)(uintptr_t)base);
	tw_emit("COUNT %ld", n);
	tw_emit("READY");
	if (read(STDIN_FILENO, &c, 1) < 0)
		return 1;
	return 0;
}
