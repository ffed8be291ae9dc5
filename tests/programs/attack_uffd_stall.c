/*
 * Attack on the tracer's liveness with userfaultfd: thread A makes an i386
 * old_mmap (int $0x80, 90) whose argument block lies in a userfaultfd-
 * registered page not yet filled, so the kernel's read of the block waits for
 * thread B, the fault's server. B, on the fault, first maps and unmaps a
 * scratch page (a memory call of the same address space), then fills the
 * page with UFFDIO_COPY (a read-only anonymous mapping of one page). A tracer
 * that judges one memory call of an address space at a time must not wait
 * for ever. Prints `STEP uffd_old_mmap ...` and COUNT 1 when it returned a
 * mapping. `STEP uffd_create userfaultfd rc=-1 ...` where userfaultfd is
 * refused (strict refuses it: run under a policy that allows it).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "common.h"

#define I386_NR_OLD_MMAP 90

struct old_mmap_args {
	uint32_t addr, len, prot, flags, fd, offset;
};

static int uffd = -1;
static char *block_page;

static long int80_1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static void *serve(void *unused)
{
	static char source[4096] __attribute__((aligned(4096)));
	struct old_mmap_args *args = (struct old_mmap_args *)source;
	struct pollfd pfd = {.fd = uffd, .events = POLLIN};
	struct uffd_msg msg;
	struct uffdio_copy copy;
	void *scratch;

	(void)unused;
	if (poll(&pfd, 1, -1) != 1 || read(uffd, &msg, sizeof(msg)) != sizeof(msg) ||
	    msg.event != UFFD_EVENT_PAGEFAULT)
		return NULL;
	scratch = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch != MAP_FAILED)
		munmap(scratch, tw_page());
	*args = (struct old_mmap_args){.len = (uint32_t)tw_page(), .prot = PROT_READ,
				       .flags = MAP_PRIVATE | MAP_ANONYMOUS, .fd = (uint32_t)-1};
	copy = (struct uffdio_copy){.dst = (uintptr_t)block_page, .src = (uintptr_t)source, .len = tw_page()};
	ioctl(uffd, UFFDIO_COPY, &copy);
	return NULL;
}

int main(void)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg;
	pthread_t server;
	long rc;

	tw_init();
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	tw_step("uffd_create", "userfaultfd", uffd, errno);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0)
		return tw_done();
	block_page = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (block_page == MAP_FAILED)
		return tw_done();
	reg = (struct uffdio_register){.range = {.start = (uintptr_t)block_page, .len = tw_page()},
				       .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
		tw_step("uffd_register", "ioctl", -1, errno);
		return tw_done();
	}
	pthread_create(&server, NULL, serve, NULL);
	rc = int80_1(I386_NR_OLD_MMAP, (long)(uintptr_t)block_page);
	if (rc < 0 && rc > -4096)
		tw_step("uffd_old_mmap", "mmap", -1, (int)-rc);
	else
		tw_emit("STEP uffd_old_mmap mmap rc=0x%lx errno=0", (unsigned long)(uint32_t)rc);
	pthread_join(server, NULL);
	if (rc >= 0 || rc <= -4096)
		tw_emit("COUNT 1");
	return tw_done();
}
