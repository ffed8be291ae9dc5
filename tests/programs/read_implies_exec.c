/*
 * read-implies-exec: personality(READ_IMPLIES_EXEC), then ordinary read+write
 * memory -- the kernel adds execute on its own. Once through mmap, once
 * through heap growth (brk), which takes its protection from the personality
 * with no protection argument at all.
 */
#include "common.h"

#include <sys/personality.h>

static void anon_mapping(size_t pg)
{
	void *p = tw_mmap("ri_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	if (tw_show_map("ri_region", p) == 1) {
		tw_put_code(p);
		tw_run("ri_call", p);
	}
	tw_munmap("ri_munmap", p, pg);
}

static void heap_growth(size_t pg)
{
	char *old = sbrk((intptr_t)(2 * pg));
	char *page;

	tw_step_addr("ri_heap_sbrk", "brk", old, (void *)-1, errno);
	if (old == (void *)-1)
		return;
	page = tw_page_of(old + pg);
	if (tw_show_map("ri_heap", page) == 1) {
		tw_put_code(page);
		tw_run("ri_heap_call", page);
	}
}

int main(void)
{
	size_t pg = tw_page();
	int old, rc;

	tw_init();
	old = personality(0xffffffff);
	tw_step("personality_query", "personality", old, errno);
	if (old < 0)
		return 1;
	rc = personality((unsigned long)old | READ_IMPLIES_EXEC);
	tw_step("personality_set", "personality", rc, errno);
	anon_mapping(pg);
	heap_growth(pg);
	return tw_done();
}
