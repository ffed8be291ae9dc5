/*
 * A program that installs its own seccomp filter (allow everything, and
 * refuse getppid with EPERM) and then maps memory writable and executable:
 * its filter must not hide the call from the tracer's.
 */
#include "common.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

int main(void)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = 4, .filter = insns };
	size_t pg = tw_page();
	void *p;
	int rc;

	tw_init();
	rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (rc == 0)
		rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
	tw_step("own_filter", "prctl", rc, rc ? errno : 0);
	rc = (int)getppid();
	tw_step("filtered_getppid", "getppid", rc < 0 ? -1 : 0, rc < 0 ? errno : 0);
	p = tw_mmap("wx_mmap", NULL, pg, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		tw_put_code(p);
		tw_run("wx_call", p);
		tw_munmap("wx_munmap", p, pg);
	}
	return tw_done();
}
