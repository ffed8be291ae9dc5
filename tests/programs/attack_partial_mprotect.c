/*
 * Attack: an mprotect that fails part-way. The kernel changes the VMAs of
 * the range one by one and stops at the first it cannot change (a hole:
 * ENOMEM; a shared mapping of a read-only descriptor asked for write:
 * EACCES), returning the error with the pages before it already changed.
 * A model that ignores failed calls thinks the first page never became
 * writable, so its later R -> R-X looks like a clean file page gaining exec.
 *
 *   hole:   2 pages of /proc/self/exe mapped private R--, the second unmapped;
 *           mprotect(both, RW) fails ENOMEM but page 1 is RW; write code
 *           (copy on write), mprotect R-X, run.
 *   shared: page 1 private R-- of /etc/passwd (no other view of it is
 *           executable, so no dual-map), page 2 a shared R-- view of the same
 *           read-only descriptor; mprotect(both, RW) fails EACCES after
 *           making page 1 RW; write code, mprotect R-X, run.
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "common.h"

static void attack(const char *name, int fd, int second_shared)
{
	size_t pg = tw_page();
	struct tw_map m;
	char label[64];
	char *p;

	snprintf(label, sizeof(label), "%s_mmap", name);
	p = tw_mmap(label, NULL, 2 * pg, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return;
	snprintf(label, sizeof(label), "%s_second", name);
	if (second_shared) {
		if (tw_mmap(label, p + pg, pg, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
			return;
	} else if (tw_munmap(label, p + pg, pg) != 0) {
		return;
	}
	snprintf(label, sizeof(label), "%s_partial_mprotect", name);
	/* Fails, yet page 1 is RW afterwards: that is the point. */
	tw_mprotect(label, p, 2 * pg, TW_RW);
	snprintf(label, sizeof(label), "%s_after", name);
	tw_show_map(label, p);
	if (tw_find_map(p, &m) != 0 || m.perms[1] != 'w')
		return;
	tw_put_code(p);
	snprintf(label, sizeof(label), "%s_rx_mprotect", name);
	if (tw_mprotect(label, p, pg, TW_RX) == 0) {
		snprintf(label, sizeof(label), "%s_call", name);
		tw_run(label, p);
	}
}

int main(void)
{
	int exe, data;

	tw_init();
	exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	data = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	if (exe < 0 || data < 0)
		return 1;
	attack("hole", exe, 0);
	attack("shared", data, 1);
	return tw_done();
}
