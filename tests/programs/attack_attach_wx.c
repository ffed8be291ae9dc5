/*
 * attack_attach_wx: writable and executable memory held at the seize.
 *
 * Built with an RWX PT_LOAD segment (as wx_segment_static: the kernel's
 * loader maps it W+X, no call asks). `segment`: says READY with its pid,
 * waits for a line on stdin (a tracer attaches), then writes code into the
 * tail of that segment and calls it: no memory call at all. `map`: an
 * anonymous page mapped read+write+execute before READY (no tracer yet,
 * nothing refused it) is written and called the same way instead.
 */
#include "common.h"

static void *wx_segment_tail(void)
{
	char line[512];
	unsigned long end = 0;
	FILE *maps = fopen("/proc/self/maps", "re");

	if (!maps)
		return NULL;
	while (fgets(line, sizeof(line), maps)) {
		unsigned long lo, hi;
		char perms[8], path[256] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3)
			continue;
		if (strcmp(perms, "rwxp") == 0 && strcmp(path, "[stack]") != 0 && strcmp(path, "[heap]") != 0)
			end = hi;
	}
	fclose(maps);
	return end ? (void *)(end - 16) : NULL;
}

int main(int argc, char **argv)
{
	int anon = argc > 1 && strcmp(argv[1], "map") == 0;
	unsigned char *target;
	char line[64];

	tw_init();
	if (anon) {
		target = tw_mmap("wx_map", NULL, tw_page(), TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (target == MAP_FAILED)
			return tw_done();
	} else {
		target = wx_segment_tail();
		if (!target) {
			tw_emit("MAPS wx_segment unmapped");
			return tw_done();
		}
		tw_show_map("wx_segment", target);
	}
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	tw_put_code(target);
	tw_run(anon ? "wx_map_call" : "wx_segment_call", target);
	return tw_done();
}
