/*
 * Attack: mremap of pages the model never saw, moved over pages it knows.
 * With MREMAP_FIXED the kernel unmaps whatever is at the target first and
 * puts the moved pages there; a model that moves only the pieces it knows
 * (none here) keeps its old view of the target: a clean page of the
 * program's file, R-X. The moved page (a MAP_GROWSDOWN region's growth,
 * which no call made, holding written code) is then made R-X.
 *
 *   file:   one page of /proc/self/exe mapped R-X (the target);
 *   grow:   a MAP_GROWSDOWN RW page in an 8 MiB hole, grown one page down
 *           by a write of code below it;
 *   move:   mremap(grown page, MREMAP_MAYMOVE | MREMAP_FIXED, target);
 *   run:    mprotect the target R-X, run.
 *
 * With argument "m32" the growth is moved by i386 mremap (int $0x80,
 * everything below 4 GiB). (An io_setup ring, mapped by no call either,
 * cannot be made executable: its filesystem is noexec.)
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "common.h"

#define HOLE (8UL << 20)

static long i386_mremap(unsigned long old, unsigned long size, unsigned long flags, unsigned long target)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(163L), "b"(old), "c"(size), "d"(size), "S"(flags), "D"(target)
			 : "memory");
	return ret;
}

int main(int argc, char **argv)
{
	int m32 = argc > 1 && strcmp(argv[1], "m32") == 0;
	size_t pg = tw_page();
	char *hole, *grows, *target, *moved, *src;
	int fd;

	tw_init();
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	hole = mmap(m32 ? (void *)0x40000000UL : NULL, HOLE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | (m32 ? MAP_FIXED_NOREPLACE : 0), -1, 0);
	if (fd < 0 || hole == MAP_FAILED)
		return 1;
	munmap(hole, HOLE);
	target = tw_mmap("file_mmap", hole, pg, TW_RX, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
	if (target == MAP_FAILED)
		return tw_done();
	grows = tw_mmap("growsdown_mmap", hole + HOLE - pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return tw_done();
	src = grows - pg;
	tw_put_code(src + pg - 64); /* grows the region down one page */
	tw_show_map("source", src);
	if (m32)
		moved = (char *)tw_step_raw("move_mremap", "mremap",
					    i386_mremap((unsigned long)src, pg, MREMAP_MAYMOVE | MREMAP_FIXED,
							(unsigned long)target));
	else {
		moved = mremap(src, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, target);
		tw_step_addr("move_mremap", "mremap", moved, MAP_FAILED, errno);
	}
	if (moved != target)
		return tw_done();
	tw_show_map("moved", target);
	if (tw_mprotect("moved_rx_mprotect", target, pg, TW_RX) == 0)
		tw_run("moved_call", target + pg - 64);
	return tw_done();
}
