/*
 * foreign-write through ptrace: the child asks to be traced and stops; the
 * parent PTRACE_POKETEXTs new code over a function in the child's read+execute
 * text and lets it go; the child calls the function and reports.
 */
#include "common.h"

#include <sys/ptrace.h>

TW_DEFINE_PATCH_TARGET;

static int child(void)
{
	long rc = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	int got;

	tw_step("child_traceme", "ptrace", rc, errno);
	if (rc < 0)
		return 1;
	raise(SIGSTOP);
	got = tw_patch_target();
	if (got == TW_CODE_RESULT)
		tw_emit("RAN child_patched_call");
	else
		tw_step("child_unpatched_call", "call", got, 0);
	return 0;
}

/* Overwrite the first word of the child's tw_patch_target, keeping the bytes past TW_CODE. */
static void poke(pid_t pid)
{
	uintptr_t addr = (uintptr_t)tw_patch_target;
	long word, rc;

	errno = 0;
	word = ptrace(PTRACE_PEEKTEXT, pid, (void *)addr, NULL);
	if (errno) {
		tw_step("child_peektext", "ptrace", -1, errno);
		return;
	}
	memcpy(&word, TW_CODE, sizeof(TW_CODE));
	rc = ptrace(PTRACE_POKETEXT, pid, (void *)addr, (void *)word);
	tw_step("child_poketext", "ptrace", rc, errno);
}

int main(void)
{
	int status = 0;
	pid_t pid;
	long rc;

	tw_init();
	pid = fork();
	if (pid == 0)
		_exit(child());
	tw_step("child_fork", "fork", pid, errno);
	if (pid < 0)
		return 1;
	if (waitpid(pid, &status, 0) < 0) {
		tw_step("child_stop_wait", "waitpid", -1, errno);
		return 1;
	}
	/* The child could not be traced (say, it already is) and has ended on its own. */
	if (!WIFSTOPPED(status)) {
		tw_report_status("child", status);
		return tw_done();
	}
	poke(pid);
	rc = ptrace(PTRACE_CONT, pid, NULL, NULL);
	tw_step("child_cont", "ptrace", rc, errno);
	tw_wait_child("child", pid);
	return tw_done();
}
