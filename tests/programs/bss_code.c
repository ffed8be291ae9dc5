/*
 * Code written into the program's own .bss, which is then made read+execute
 * (w-to-x). Run many times from a shell pipeline (`for ...; do ./bss_code ||
 * echo; done | tee`), where a child's exec is often reported before its
 * parent's fork event: a tracer that then copies the shell's model over the
 * child's judges this call against the shell's memory (issue 10, route 5).
 */
#include "common.h"

static unsigned char page[1 << 14] __attribute__((aligned(1 << 12)));

int main(void)
{
	unsigned char *p = page + 4096;

	tw_init();
	tw_put_code(p);
	if (tw_mprotect("bss_rx_mprotect", p, tw_page(), TW_RX) == 0)
		tw_run("bss_call", p);
	return tw_done();
}
