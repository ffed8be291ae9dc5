/*
 * Attack: a program the tree wrote, exec'd where the tracer sees the exec
 * only at its PTRACE_EVENT_EXEC stop (no stop at execve's entry), or code
 * the tree wrote run by a task whose address space the model copied from a
 * creator mid-call. A copy of this program is written to a fresh directory
 * (w); each route (the arguments pick some, none: all) runs in a child:
 *   procfd     w opened read-only, exec'd as /proc/self/fd/N;
 *   opathfd    w opened O_PATH, exec'd as /proc/self/fd/N;
 *   pathrace   a thread flips the path buffer between /bin/true and w
 *              while execve reads it (20 tries, each in its own process);
 *   script     a script whose #! interpreter is w;
 *   nested     a script whose interpreter is a script whose interpreter is w;
 *   ldso       the system's dynamic loader run with w as its argument;
 *   vfork      vfork, then execve(w) in the child;
 *   thread     a second thread execs w while the first loops in mprotect;
 *   clonevfork clone(CLONE_VM | CLONE_VFORK | SIGCHLD), the child execs w;
 *   clonevm0   clone(CLONE_VM) with no exit signal, the child execs w;
 *   cvmcode    clone(CLONE_VM) with no exit signal: the child writes code
 *              into a page of the shared space and mprotects it R-X;
 *   forkmid    a thread keeps moving written code (mremap MREMAP_FIXED) over
 *              a clean read-only page of this program's file and mapping
 *              the clean page back, while the main thread forks: each child
 *              makes the page R-X and runs it when it holds the code;
 *   forkmidvm  as forkmid, the mover a clone(CLONE_VM | SIGCHLD) process.
 * w prints RAN <route>_call when it runs (the nested scripts' label comes
 * from the innermost #! line; pathrace's try i prints RAN pathrace<i>_call).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common.h"

static char dir[] = "/tmp/tw_late_XXXXXX";
static char written[256];
static const char *route_name;

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void exec_label(const char *path, const char *label)
{
	char ran[64];
	char *argv[] = {written, "--ran", ran, NULL};
	char *envp[] = {NULL};

	snprintf(ran, sizeof(ran), "%s_call", label);
	execve(path, argv, envp);
	tw_step(label, "execve", -1, errno);
}

static void route_fd(int flags)
{
	char path[64];
	int fd = open(written, flags);

	if (fd < 0) {
		tw_step(route_name, "open", -1, errno);
		return;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	exec_label(path, route_name);
}

static char race_path[256];
static atomic_int race_flips;

static void *flip_path(void *arg)
{
	(void)arg;
	for (;;) {
		strcpy(race_path, written);
		atomic_fetch_add(&race_flips, 1);
		sched_yield();
		strcpy(race_path, "/bin/true");
		memset(race_path + 9, 0, 8);
	}
	return NULL;
}

static void route_pathrace(void)
{
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			char label[32];
			char *argv[] = {written, "--ran", label, NULL};
			char *envp[] = {NULL};
			pthread_t t;

			snprintf(label, sizeof(label), "pathrace%d_call", i);

			strcpy(race_path, "/bin/true");
			pthread_create(&t, NULL, flip_path, NULL);
			while (atomic_load(&race_flips) < i % 5 + 1)
				;
			for (int k = 0; k < 1000; k++)
				syscall(SYS_execve, race_path, argv, envp);
			_exit(0);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
}

static void route_script(int nested)
{
	char interp_line[512], script[300], outer[300], line[600];

	snprintf(script, sizeof(script), "%s/s", dir);
	snprintf(interp_line, sizeof(interp_line), "#!%s --ran-script%s\n", written, nested ? "-nested" : "");
	if (write_file(script, interp_line) != 0)
		return;
	if (!nested) {
		exec_label(script, "script");
		return;
	}
	snprintf(outer, sizeof(outer), "%s/s2", dir);
	snprintf(line, sizeof(line), "#!%s\n", script);
	if (write_file(outer, line) != 0)
		return;
	exec_label(outer, "nested");
}

static void route_ldso(void)
{
	char *argv[] = {"ld.so", written, "--ran", "ldso_call", NULL};
	char *envp[] = {NULL};

	execve("/lib64/ld-linux-x86-64.so.2", argv, envp);
	tw_step("ldso", "execve", -1, errno);
}

static void route_vfork(void)
{
	pid_t pid = vfork();

	if (pid == 0) {
		exec_label(written, "vfork");
		_exit(127);
	}
	tw_wait_child("vfork_grandchild", pid);
}

static void *exec_thread(void *arg)
{
	(void)arg;
	usleep(20000);
	exec_label(written, "thread");
	_exit(1);
}

static void route_thread(void)
{
	void *page = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_t t;

	pthread_create(&t, NULL, exec_thread, NULL);
	for (;;) {
		mprotect(page, tw_page(), PROT_READ);
		mprotect(page, tw_page(), TW_RW);
	}
}

static int child_exec(void *arg)
{
	exec_label(written, arg);
	_exit(127);
}

static char *code_page;

static int child_code(void *arg)
{
	(void)arg;
	tw_put_code(code_page);
	if (tw_mprotect("cvmcode_rx", code_page, tw_page(), TW_RX) == 0)
		tw_run("cvmcode_call", code_page);
	_exit(0);
}

static void route_clone(int flags, int (*fn)(void *), const char *label)
{
	size_t size = 1 << 16;
	char *stack = mmap(NULL, size, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int status = 0;
	pid_t pid;

	code_page = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pid = clone(fn, stack + size, flags, (void *)label);
	tw_step(label, "clone", pid, errno);
	if (pid > 0 && waitpid(pid, &status, __WALL) == pid) {
		char name[64];

		snprintf(name, sizeof(name), "%s_grandchild", label);
		tw_report_status(name, status);
	}
}

static char *clean_page;
static atomic_int mover_stop;

static void move_forever(void)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

	while (!atomic_load(&mover_stop)) {
		char *w = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		tw_put_code(w);
		mprotect(w, tw_page(), PROT_READ);
		mremap(w, tw_page(), tw_page(), MREMAP_MAYMOVE | MREMAP_FIXED, clean_page);
		mmap(clean_page, tw_page(), PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
	}
}

static void *mover_thread(void *arg)
{
	(void)arg;
	move_forever();
	return NULL;
}

static int mover_clone(void *arg)
{
	(void)arg;
	move_forever();
	_exit(0);
}

static void route_forkmid(int vm)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	size_t size = 1 << 16;
	char *stack = mmap(NULL, size, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const char *label = vm ? "forkmidvm_call" : "forkmid_call";
	pthread_t t;
	pid_t mover = 0;
	int ran = 0;

	clean_page = mmap(NULL, tw_page(), PROT_READ, MAP_PRIVATE, fd, 0);
	if (vm)
		mover = clone(mover_clone, stack + size, CLONE_VM | SIGCHLD, NULL);
	else
		pthread_create(&t, NULL, mover_thread, NULL);
	for (int i = 0; i < 300 && !ran; i++) {
		int status = 0;
		pid_t pid = fork();

		if (pid == 0) {
			if (memcmp(clean_page, TW_CODE, sizeof(TW_CODE)) != 0)
				_exit(0);
			if (mprotect(clean_page, tw_page(), TW_RX) != 0)
				_exit(1);
			tw_run(label, clean_page);
			_exit(2);
		}
		if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 2)
			ran = 1;
	}
	atomic_store(&mover_stop, 1);
	if (vm)
		waitpid(mover, NULL, 0);
	tw_emit("COUNT %d", ran);
}

int main(int argc, char **argv)
{
	const char *routes[] = {"procfd", "opathfd", "pathrace", "script", "nested", "ldso", "vfork",
				"thread", "clonevfork", "clonevm0", "cvmcode", "forkmid", "forkmidvm"};

	tw_init();
	if (argc > 2 && strcmp(argv[1], "--ran") == 0) {
		tw_emit("RAN %s", argv[2]);
		return 0;
	}
	if (argc > 1 && strncmp(argv[1], "--ran-script", 12) == 0) {
		tw_emit("RAN %s_call", argv[1][12] ? "nested" : "script");
		return 0;
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(written, sizeof(written), "%s/w", dir);
	if (tw_copy_file("/proc/self/exe", written) != 0)
		return 1;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		char label[64];
		pid_t pid;

		int asked = argc == 1;

		for (int a = 1; a < argc; a++)
			asked |= strcmp(argv[a], routes[i]) == 0;
		if (!asked)
			continue;
		route_name = routes[i];
		pid = fork();
		if (pid == 0) {
			switch (i) {
			case 0: route_fd(O_RDONLY); break;
			case 1: route_fd(O_PATH); break;
			case 2: route_pathrace(); break;
			case 3: route_script(0); break;
			case 4: route_script(1); break;
			case 5: route_ldso(); break;
			case 6: route_vfork(); break;
			case 7: route_thread(); break;
			case 8: route_clone(CLONE_VM | CLONE_VFORK | SIGCHLD, child_exec, "clonevfork"); break;
			case 9: route_clone(CLONE_VM, child_exec, "clonevm0"); break;
			case 10: route_clone(CLONE_VM, child_code, "cvmcode"); break;
			case 11: route_forkmid(0); break;
			default: route_forkmid(1); break;
			}
			_exit(0);
		}
		snprintf(label, sizeof(label), "%s_child", routes[i]);
		tw_wait_child(label, pid);
	}
	{
		char path[300];

		for (const char *const *name = (const char *const[]){"w", "s", "s2", NULL}; *name; name++) {
			snprintf(path, sizeof(path), "%s/%s", dir, *name);
			unlink(path);
		}
		rmdir(dir);
	}
	return tw_done();
}
