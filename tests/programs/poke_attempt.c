/*
 * A parent tries PTRACE_POKETEXT into its child's read+execute text without
 * being its tracer (under a ptrace-based tracer it cannot become one: the
 * child's PTRACE_TRACEME fails). The request itself is what a tracer must
 * judge: it asks to write code past the page protections.
 */
#include "common.h"
#include <sys/ptrace.h>

TW_DEFINE_PATCH_TARGET;

int main(void)
{
	int go[2];
	long word = 0, rc;
	pid_t child;

	tw_init();
	if (pipe(go) < 0)
		return 1;
	child = fork();
	if (child == 0) {
		char byte;

		close(go[1]);
		if (read(go[0], &byte, 1) == 1 && tw_patch_target() == TW_CODE_RESULT)
			tw_emit("RAN child_patched_call");
		_exit(0);
	}
	tw_step("child_fork", "fork", child, errno);
	memcpy(&word, TW_CODE, sizeof(TW_CODE));
	rc = ptrace(PTRACE_POKETEXT, child, (void *)tw_patch_target, (void *)word);
	tw_step("child_poketext", "ptrace", rc, rc < 0 ? errno : 0);
	if (write(go[1], "g", 1) != 1)
		return 1;
	tw_wait_child("patched", child);
	return tw_done();
}
