/*
 * W+X at exec with no syscall (issue 10, route 9): the kernel's loader maps a
 * PT_LOAD segment readable, writable and executable (a segment linked that
 * way, or its flags patched after linking), in the program or in its
 * interpreter. Code is written into the tail of the last such mapping (past
 * the end of its data) and run; no mmap or mprotect is ever made for it.
 */
#include "common.h"

int main(void)
{
	char line[512];
	unsigned long start = 0, end = 0;
	FILE *maps;

	tw_init();
	maps = fopen("/proc/self/maps", "re");
	if (!maps)
		return 1;
	while (fgets(line, sizeof(line), maps)) {
		unsigned long lo, hi;
		char perms[8], path[256] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3)
			continue;
		if (strcmp(perms, "rwxp") == 0 && strcmp(path, "[stack]") != 0 && strcmp(path, "[heap]") != 0) {
			start = lo;
			end = hi;
		}
	}
	fclose(maps);
	if (!end) {
		tw_emit("MAPS wx_segment unmapped");
		return tw_done();
	}
	tw_show_map("wx_segment", (void *)start);
	tw_put_code((void *)(end - 16));
	tw_run("wx_segment_call", (void *)(end - 16));
	return tw_done();
}
