/*
 * READ_IMPLIES_EXEC inherited across exec: the program sets the persona and
 * re-executes itself; the new image's readable+writable mmap is executable
 * without asking for it.   rie_reexec        (sets the persona, re-execs)
 *                          rie_reexec child  (maps memory, runs code there)
 */
#include "common.h"
#include <sys/personality.h>

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	void *p;

	tw_init();
	if (argc < 2) {
		int rc = personality(READ_IMPLIES_EXEC);
		tw_step("personality_set", "personality", rc < 0 ? -1 : 0, rc < 0 ? errno : 0);
		execl("/proc/self/exe", argv[0], "child", (char *)NULL);
		tw_step("reexec", "execve", -1, errno);
		return 1;
	}
	p = tw_mmap("child_rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return tw_done();
	tw_put_code(p);
	if (tw_show_map("child_region", p))
		tw_run("child_call", p);
	tw_munmap("child_munmap", p, pg);
	return tw_done();
}
