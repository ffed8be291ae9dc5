/*
 * An i386 program with no PT_GNU_STACK header (the build drops it). For such
 * a program the kernel sets READ_IMPLIES_EXEC at exec, with no syscall asking,
 * so ordinary heap growth through brk yields executable memory.
 */
#include "common.h"

#include <sys/personality.h>

int main(void)
{
	size_t pg = tw_page();
	char *old, *page;
	int persona;

	tw_init();
	persona = personality(0xffffffff);
	tw_step("personality_query", "personality", persona, errno);
	old = sbrk((intptr_t)(2 * pg));
	tw_step_addr("heap_sbrk", "brk", old, (void *)-1, errno);
	if (old == (void *)-1)
		return 1;
	page = tw_page_of(old + pg);
	tw_show_map("stack", &persona);
	if (tw_show_map("heap", page) == 1) {
		tw_put_code(page);
		tw_run("heap_call", page);
	}
	return tw_done();
}
