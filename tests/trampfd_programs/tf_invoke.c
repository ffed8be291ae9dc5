/*
 * v1 trampoline invocations, one scenario per run: tf_invoke SCENARIO [ARGS].
 * The target `tf_probe` records every general register, the stack pointer
 * and the stack around it as it sees them on entry; tests/test_trampfd_v1.py
 * checks them against the specification.
 *
 * Lines: STEP (common.h), VAL <label> <values...>, SEGV <label> code=<si_code>
 * addr=<si_addr - base> rip=<rip - base> (a SIGSEGV caught; base is the
 * scenario's reference address), CHILD, DONE.
 */
#include "../programs/common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>

#include "trampfd.h"

#define WINDOW_BELOW 384
#define WINDOW_ABOVE 128
#define WINDOW_WORDS ((WINDOW_BELOW + WINDOW_ABOVE) / 8)

/* Written by the asm below: tf_call saves its stack pointer before calling,
 * tf_probe stores rax..r15 (15), rsp, then the stack window around rsp. */
uint64_t tf_saved_sp;
uint64_t tf_snap[16 + WINDOW_WORDS];
void tf_call_return(void);
void tf_probe(void);
long tf_call(void *tramp);
void tf_call_on(void *tramp, void *stack_top);

/* tf_call: preserve the callee-saved registers a context may load, record
 * the stack pointer, call the trampoline. tf_probe returns to tf_call through
 * the recorded stack pointer, whatever the trampoline did to rsp. */
__asm__(".text\n"
	".globl tf_call\n"
	"tf_call:\n"
	"	push %rbx\n	push %rbp\n	push %r12\n	push %r13\n	push %r14\n	push %r15\n"
	"	sub $8, %rsp\n"
	"	mov %rsp, tf_saved_sp(%rip)\n"
	"	call *%rdi\n"
	".globl tf_call_return\n"
	"tf_call_return:\n"
	"	add $8, %rsp\n"
	"	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n	pop %rbp\n	pop %rbx\n"
	"	ret\n"
	".globl tf_probe\n"
	"tf_probe:\n"
	"	mov %rax, tf_snap+0(%rip)\n	mov %rbx, tf_snap+8(%rip)\n	mov %rcx, tf_snap+16(%rip)\n"
	"	mov %rdx, tf_snap+24(%rip)\n	mov %rsi, tf_snap+32(%rip)\n	mov %rdi, tf_snap+40(%rip)\n"
	"	mov %rbp, tf_snap+48(%rip)\n	mov %r8, tf_snap+56(%rip)\n	mov %r9, tf_snap+64(%rip)\n"
	"	mov %r10, tf_snap+72(%rip)\n	mov %r11, tf_snap+80(%rip)\n	mov %r12, tf_snap+88(%rip)\n"
	"	mov %r13, tf_snap+96(%rip)\n	mov %r14, tf_snap+104(%rip)\n	mov %r15, tf_snap+112(%rip)\n"
	"	mov %rsp, tf_snap+120(%rip)\n"
	"	lea -384(%rsp), %rsi\n"
	"	lea tf_snap+128(%rip), %rdi\n"
	"	mov $64, %ecx\n"
	"	cld\n"
	"	rep movsq\n"
	"	mov tf_saved_sp(%rip), %rsp\n"
	"	sub $8, %rsp\n"
	"	mov $0x5eed, %eax\n"
	"	ret\n"
	".globl tf_call_on\n"
	"tf_call_on:\n"
	"	mov %rsi, %rsp\n"
	"	call *%rdi\n"
	"	ud2\n");

static const char *const REG_NAMES[15] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
					  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
static const uint32_t REG_IDS[15] = {TRAMPFD_REG_RAX, TRAMPFD_REG_RBX, TRAMPFD_REG_RCX, TRAMPFD_REG_RDX,
				     TRAMPFD_REG_RSI, TRAMPFD_REG_RDI, TRAMPFD_REG_RBP, TRAMPFD_REG_R8,
				     TRAMPFD_REG_R9,  TRAMPFD_REG_R10, TRAMPFD_REG_R11, TRAMPFD_REG_R12,
				     TRAMPFD_REG_R13, TRAMPFD_REG_R14, TRAMPFD_REG_R15};

static long add(long a, long b) { return a + b; }

/* A STEP line for a call already made: errno is read after the call. */
static void step(const char *label, const char *call, long rc)
{
	tw_step(label, call, rc, errno);
}

static int new_trampfd(void)
{
	struct trampfd_user user = {0, 0};
	int fd = trampfd_create(TRAMPFD_USER, &user, 0);

	if (fd < 0) {
		tw_step("create", "trampfd", fd, errno);
		exit(2);
	}
	return fd;
}

static void set_regs(int fd, const struct trampfd_reg *regs, uint32_t n)
{
	if (trampfd_set_regs(fd, regs, n) != 0) {
		tw_step("set_regs", "pwrite64", -1, errno);
		exit(2);
	}
}

static void *map_trampoline(int fd)
{
	void *tramp = trampfd_map(fd);

	if (!tramp) {
		tw_step("map", "mmap", -1, errno);
		exit(2);
	}
	return tramp;
}

/* A trampoline to add() with rsi (the second argument) set to `b`. */
static void *adder(long b, int *fd_out)
{
	int fd = new_trampfd();
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RSI, 0, (uint64_t)b}, {TRAMPFD_REG_RIP, 0, (uint64_t)add}};

	set_regs(fd, regs, 2);
	if (fd_out)
		*fd_out = fd;
	return map_trampoline(fd);
}

static long call_adder(void *tramp, long a)
{
	return ((long (*)(long, long))tramp)(a, 0);
}

static void print_snapshot(void)
{
	char line[512];
	int i, n = 0;

	for (i = 0; i < 15; i++)
		n += snprintf(line + n, sizeof(line) - n, " %s=0x%lx", REG_NAMES[i], (unsigned long)tf_snap[i]);
	tw_emit("VAL regs%s", line);
	tw_emit("VAL sp saved=0x%lx rsp=0x%lx top=0x%lx return=0x%lx", (unsigned long)tf_saved_sp,
		(unsigned long)tf_snap[15], (unsigned long)tf_snap[16 + WINDOW_BELOW / 8],
		(unsigned long)(uintptr_t)tf_call_return);
}

/* The stack window, 128 bytes (from rsp - 384 upwards) per line. */
static void print_window(void)
{
	const uint8_t *bytes = (const uint8_t *)&tf_snap[16];
	char hex[257];
	int line, i;

	for (line = 0; line < WINDOW_WORDS / 16; line++) {
		for (i = 0; i < 128; i++)
			snprintf(hex + 2 * i, 3, "%02x", bytes[128 * line + i]);
		tw_emit("VAL window%d %s", line, hex);
	}
}

/* --- SIGSEGV reporting ------------------------------------------------------- */

static const char *segv_label = "segv";
static uintptr_t segv_base;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;

	(void)sig;
	tw_emit("SEGV %s code=%d addr=%ld rip=%ld", segv_label, si->si_code, (long)((uintptr_t)si->si_addr - segv_base),
		(long)((uintptr_t)uc->uc_mcontext.gregs[REG_RIP] - segv_base));
	_exit(77);
}

static void catch_segv(const char *label, const void *base)
{
	static char altstack[65536];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
	struct sigaction sa;

	segv_label = label;
	segv_base = (uintptr_t)base;
	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaction(SIGSEGV, &sa, NULL);
}

/* --- scenarios ------------------------------------------------------------------ */

/* Every general register a context may set, seen by the target. */
static int scenario_regs(void)
{
	struct trampfd_reg regs[16];
	int fd = new_trampfd();
	int i;

	for (i = 0; i < 15; i++)
		regs[i] = (struct trampfd_reg){REG_IDS[i], 0, 0x1100000000000000ull + ((uint64_t)i << 32) + 0xa0 + i};
	regs[15] = (struct trampfd_reg){TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)tf_probe};
	set_regs(fd, regs, 16);
	tw_emit("VAL result 0x%lx", tf_call(map_trampoline(fd)));
	print_snapshot();
	return 0;
}

/* A repeated name: the last value wins. */
static int scenario_repeat(void)
{
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RDI, 0, 1},
				     {TRAMPFD_REG_RSI, 0, 5},
				     {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add},
				     {TRAMPFD_REG_RDI, 0, 2},
				     {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)tf_probe}};
	int fd = new_trampfd();

	set_regs(fd, regs, 5);
	tf_call(map_trampoline(fd));
	print_snapshot();
	return 0;
}

/* A stack context of SIZE bytes (1, 2, 3...) at OFFSET with FLAGS. */
static int scenario_stack(int argc, char **argv)
{
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)tf_probe}};
	uint8_t data[TRAMPFD_MAX_DATA_SIZE];
	uint32_t size, offset, flags, i;
	int fd = new_trampfd();

	if (argc < 5)
		return 2;
	size = (uint32_t)strtoul(argv[2], NULL, 0);
	offset = (uint32_t)strtoul(argv[3], NULL, 0);
	flags = (uint32_t)strtoul(argv[4], NULL, 0);
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i + 1);
	set_regs(fd, regs, 1);
	step("set_stack", "pwrite64", trampfd_set_stack(fd, flags, offset, data, size));
	tf_call(map_trampoline(fd));
	print_snapshot();
	print_window();
	return 0;
}

/* An allowed-PC list that holds the target: the invocation works. */
static int scenario_allowed(void)
{
	uint64_t pcs[] = {(uint64_t)(uintptr_t)tf_probe, (uint64_t)(uintptr_t)add};
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RSI, 0, 40}, {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	int fd = new_trampfd();

	step("set_pcs", "pwrite64", trampfd_set_allowed_pcs(fd, pcs, 2));
	set_regs(fd, regs, 2);
	tw_emit("VAL allowed %ld", call_adder(map_trampoline(fd), 2));
	return 0;
}

/* Two trampolines on adjacent pages of one reserved range. */
static int scenario_second(void)
{
	char *range = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct trampfd_reg one[] = {{TRAMPFD_REG_RSI, 0, 100}, {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	struct trampfd_reg two[] = {{TRAMPFD_REG_RSI, 0, 200}, {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	int fd1 = new_trampfd(), fd2 = new_trampfd();
	char *t1, *t2;

	munmap(range, 8192);
	set_regs(fd1, one, 2);
	set_regs(fd2, two, 2);
	t1 = mmap(range, 4096, PROT_NONE, MAP_PRIVATE, fd1, 0);
	t2 = mmap(range + 4096, 4096, PROT_NONE, MAP_PRIVATE, fd2, 0);
	tw_step_addr("map1", "mmap", t1, MAP_FAILED, errno);
	tw_step_addr("map2", "mmap", t2, MAP_FAILED, errno);
	tw_emit("VAL second hinted=%d results=%ld,%ld,%ld", t1 == range && t2 == range + 4096,
		call_adder(t1, 1), call_adder(t2, 2), call_adder(t1, 3));
	return 0;
}

/* Invocation at `offset` bytes into the page (0: the right place). */
static int scenario_offset(int argc, char **argv)
{
	long offset = argc > 2 ? strtol(argv[2], NULL, 0) : 0;
	char *tramp = adder(1, NULL);

	catch_segv("offset", tramp);
	tw_emit("VAL offset %ld", call_adder(tramp + offset, 1));
	return 0;
}

/* A data read (or write) of the trampoline page. */
static int scenario_access(int argc, char **argv)
{
	volatile char *tramp = adder(1, NULL);
	int write_it = argc > 2 && strcmp(argv[2], "write") == 0;

	catch_segv("access", (const void *)tramp);
	if (write_it)
		tramp[8] = 1;
	else
		tw_emit("VAL access %d", tramp[8]);
	return 0;
}

/* No register context (never set, or removed): SIGSEGV. */
static int scenario_nocontext(int argc, char **argv)
{
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	int fd = new_trampfd();
	char *tramp;

	if (argc > 2 && strcmp(argv[2], "removed") == 0) {
		set_regs(fd, regs, 1);
		step("remove", "pwrite64", trampfd_set_regs(fd, regs, 0));
	}
	tramp = map_trampoline(fd);
	catch_segv("nocontext", tramp);
	tw_emit("VAL nocontext %ld", call_adder(tramp, 1));
	return 0;
}

/* Unmapped, the page is no trampoline any more: a PROT_NONE page mapped at
 * the same address faults like any other. */
static int scenario_unmap(void)
{
	char *tramp = adder(1, NULL);
	void *again;

	tw_emit("VAL mapped %ld", call_adder(tramp, 1));
	step("unmap", "munmap", munmap(tramp, 4096));
	again = mmap(tramp, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	tw_emit("VAL same_address %d", again == (void *)tramp);
	catch_segv("unmapped", tramp);
	tw_emit("VAL unmapped %ld", call_adder(tramp, 1));
	return 0;
}

/* fork: the child does not inherit the trampoline page; the parent keeps it. */
static int scenario_fork(void)
{
	char *tramp = adder(5, NULL);
	struct tw_map m;
	int status;
	pid_t child;

	tw_emit("VAL before %ld", call_adder(tramp, 1));
	child = fork();
	if (child == 0) {
		tw_emit("VAL child_mapped %d", tw_find_map(tramp, &m) == 0);
		catch_segv("child", tramp);
		tw_emit("VAL child_result %ld", call_adder(tramp, 1));
		_exit(0);
	}
	waitpid(child, &status, 0);
	if (WIFSIGNALED(status))
		tw_emit("CHILD fork signal=%s", tw_signame(WTERMSIG(status)));
	else
		tw_emit("CHILD fork exit=%d", WEXITSTATUS(status));
	tw_emit("VAL after %ld", call_adder(tramp, 2));
	return 0;
}

struct worker {
	void *tramp;
	long calls, bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	long i;

	for (i = 0; i < w->calls; i++)
		if (call_adder(w->tramp, i) != i + 1000)
			w->bad++;
	return NULL;
}

/* Two threads invoking one trampoline concurrently, N times each. */
static int scenario_threads(int argc, char **argv)
{
	long n = argc > 2 ? strtol(argv[2], NULL, 0) : 1000;
	void *tramp = adder(1000, NULL);
	struct worker w[2] = {{tramp, n, 0}, {tramp, n, 0}};
	pthread_t t[2];
	int i;

	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, work, &w[i]);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	tw_emit("VAL threads calls=%ld bad=%ld", w[0].calls + w[1].calls, w[0].bad + w[1].bad);
	return 0;
}

static void *read_map_later(void *arg)
{
	int *pipe_fds = arg, fd;
	struct trampfd_map map;

	if (read(pipe_fds[0], &fd, sizeof(fd)) != sizeof(fd))
		return NULL;
	step("thread_read", "pread64", pread(fd, &map, sizeof(map), TRAMPFD_MAP_OFFSET));
	tw_emit("VAL thread_map %u %u %u", map.size, map.prot, map.flags);
	return NULL;
}

/* A thread that existed before the first trampfd uses it: the descriptor
 * filter reached every thread of the process. */
static int scenario_late_thread(void)
{
	int pipe_fds[2], fd;
	pthread_t thread;

	if (pipe(pipe_fds) != 0)
		return 1;
	pthread_create(&thread, NULL, read_map_later, pipe_fds);
	fd = new_trampfd();
	if (write(pipe_fds[1], &fd, sizeof(fd)) != sizeof(fd))
		return 1;
	pthread_join(thread, NULL);
	return 0;
}

static volatile long signals_received;
static volatile int signals_done;

static void count_signal(int sig)
{
	(void)sig;
	signals_received++;
}

static void *queue_signals(void *arg)
{
	pthread_t *target = arg;
	union sigval value = {0};
	long sent = 0;

	while (!signals_done) {
		if (pthread_sigqueue(*target, SIGRTMIN, value) == 0)
			sent++;
		usleep(50);
	}
	return (void *)sent;
}

/* Real-time signals (queued one by one) sent to a thread that keeps
 * creating, mapping and closing trampolines: none may be lost while the
 * emulator injects syscalls into it. */
static int scenario_signals(int argc, char **argv)
{
	long rounds = argc > 2 ? strtol(argv[2], NULL, 0) : 100, i;
	pthread_t self = pthread_self(), sender;
	void *sent;
	int fd;

	signal(SIGRTMIN, count_signal);
	pthread_create(&sender, NULL, queue_signals, &self);
	for (i = 0; i < rounds; i++) {
		fd = new_trampfd();
		munmap(map_trampoline(fd), 4096);
		close(fd);
	}
	signals_done = 1;
	pthread_join(sender, &sent);
	/* Queued signals still pending are delivered before this returns. */
	sigset_t none;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	tw_emit("VAL signals sent=%ld received=%ld", (long)sent, signals_received);
	return 0;
}

/* exec: the close-on-exec descriptor is gone, a dup without it survives and
 * still is the same trampfd; the old mapping is gone with the old image. */
static int scenario_exec(char **argv)
{
	int fd, copy;
	char *tramp = adder(7, &fd);
	char fd_text[16], copy_text[16], addr_text[32];

	copy = dup(fd);
	tw_emit("VAL exec_before %ld", call_adder(tramp, 1));
	snprintf(fd_text, sizeof(fd_text), "%d", fd);
	snprintf(copy_text, sizeof(copy_text), "%d", copy);
	snprintf(addr_text, sizeof(addr_text), "%p", (void *)tramp);
	execl("/proc/self/exe", argv[0], "exec-check", fd_text, copy_text, addr_text, (char *)NULL);
	tw_step("exec", "execve", -1, errno);
	return 1;
}

static int scenario_exec_check(int argc, char **argv)
{
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RSI, 0, 9}, {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	struct trampfd_regs header;
	struct tw_map m;
	int fd, copy;
	void *old, *tramp;

	if (argc < 5)
		return 2;
	fd = atoi(argv[2]);
	copy = atoi(argv[3]);
	old = (void *)strtoul(argv[4], NULL, 0);
	step("cloexec_gone", "fcntl", fcntl(fd, F_GETFD));
	step("copy_kept", "fcntl", fcntl(copy, F_GETFD));
	step("copy_context", "pread64", pread(copy, &header, sizeof(header), TRAMPFD_REGS_OFFSET));
	tw_emit("VAL copy_nregs %u", header.nregs);
	tw_emit("VAL old_mapped %d", tw_find_map(old, &m) == 0);
	/* The new image has its own add(): point the context there. */
	set_regs(copy, regs, 2);
	tramp = map_trampoline(copy);
	tw_emit("VAL exec_after %ld", call_adder(tramp, 1));
	return 0;
}

static int send_fd(int sock, int fd)
{
	char byte = 'x';
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int receive_fd(int sock)
{
	char byte;
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cmsg;
	int fd = -1;

	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (cmsg && cmsg->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

/* A process forked before the trampfd existed receives it over a Unix
 * socket, sees the creator's context, maps and invokes it, and changes the
 * context for both. */
static int scenario_pass(void)
{
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RSI, 0, 300}, {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	struct trampfd_reg changed[] = {{TRAMPFD_REG_RSI, 0, 400}, {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	int sv[2], status, fd;
	pid_t child;

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	child = fork();
	if (child == 0) {
		struct trampfd_reg back[2];
		struct trampfd_regs header;
		char buf[sizeof(header) + sizeof(back)];
		int got;

		close(sv[0]);
		got = receive_fd(sv[1]);
		tw_emit("VAL received floor=%d", got >= 1000);
		step("child_read", "pread64", pread(got, buf, sizeof(buf), TRAMPFD_REGS_OFFSET));
		memcpy(&header, buf, sizeof(header));
		memcpy(back, buf + sizeof(header), sizeof(back));
		tw_emit("VAL child_sees nregs=%u rsi=%lu", header.nregs, (unsigned long)back[0].value);
		tw_emit("VAL child_result %ld", call_adder(map_trampoline(got), 1));
		set_regs(got, changed, 2);
		_exit(0);
	}
	close(sv[1]);
	fd = new_trampfd();
	set_regs(fd, regs, 2);
	step("send", "sendmsg", send_fd(sv[0], fd));
	waitpid(child, &status, 0);
	tw_emit("CHILD pass exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	tw_emit("VAL parent_result %ld", call_adder(map_trampoline(fd), 1));
	return 0;
}

/* The stack data cannot be copied (no memory below the stack pointer):
 * SIGSEGV, with the registers already loaded (rip is the target). */
static int scenario_stackfault(void)
{
	struct trampfd_reg regs[] = {{TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)add}};
	uint8_t data[64] = {1};
	char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = new_trampfd();
	void *tramp;

	munmap(pages, 4096);
	set_regs(fd, regs, 1);
	trampfd_set_stack(fd, TRAMPFD_SET_SP, 0, data, sizeof(data));
	tramp = map_trampoline(fd);
	catch_segv("stackfault", (void *)(uintptr_t)add);
	tf_call_on(tramp, pages + 4096 + 32);
	return 0;
}

/* A real process_madvise (MADV_COLD on our own pidfd) through the trampfd number. */
static int scenario_madvise(void)
{
	size_t len = 16 * 4096;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iovec iov = {mem, len};
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);

	memset(mem, 1, len);
	step("pidfd_open", "pidfd_open", pidfd);
	step("process_madvise", "process_madvise", syscall(SYS_process_madvise, pidfd, &iov, 1UL, MADV_COLD, 0UL));
	step("process_madvise_bad_advice", "process_madvise", syscall(SYS_process_madvise, pidfd, &iov, 1UL, 12345, 0UL));
	tw_emit("VAL memory %d", mem[len - 1]);
	return 0;
}

/* The static-chain closure (data in r10) built on trampfd or on an RWX page. */
struct closure_data {
	long base;
};

static long closure_handler(long x)
{
	struct closure_data *d;

	__asm__ volatile("mov %%r10, %0" : "=r"(d));
	return d->base + x;
}

static int scenario_closure(int argc, char **argv)
{
	static struct closure_data data = {4000};
	int rwx = argc > 2 && strcmp(argv[2], "rwx") == 0;
	long (*fn)(long);

	if (rwx) {
		uint8_t *page = mmap(NULL, 4096, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t d = (uint64_t)(uintptr_t)&data, h = (uint64_t)(uintptr_t)closure_handler;

		if (page == MAP_FAILED) {
			tw_step("rwx", "mmap", -1, errno);
			return 1;
		}
		page[0] = 0x49, page[1] = 0xba; /* movabs $data, %r10 */
		memcpy(page + 2, &d, 8);
		page[10] = 0x49, page[11] = 0xbb; /* movabs $handler, %r11 */
		memcpy(page + 12, &h, 8);
		page[20] = 0x41, page[21] = 0xff, page[22] = 0xe3; /* jmp *%r11 */
		fn = (long (*)(long))(uintptr_t)page;
	} else {
		struct trampfd_reg regs[] = {{TRAMPFD_REG_R10, 0, (uint64_t)(uintptr_t)&data},
					     {TRAMPFD_REG_RIP, 0, (uint64_t)(uintptr_t)closure_handler}};
		int fd = new_trampfd();

		set_regs(fd, regs, 2);
		fn = (long (*)(long))map_trampoline(fd);
	}
	tw_emit("VAL closure %ld", fn(2));
	return 0;
}

/* Heavy ordinary I/O beside one trampoline: none of it may stop in the tracer. */
static int scenario_io(int argc, char **argv)
{
	long n = argc > 2 ? strtol(argv[2], NULL, 0) : 1000, i;
	char path[] = "/tmp/tf_invoke_io_XXXXXX", buf[64] = {0};
	int file = mkstemp(path), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	char *tramp = adder(1, NULL);
	long sum = 0;

	unlink(path);
	for (i = 0; i < n; i++) {
		if (pwrite(file, buf, sizeof(buf), (i % 16) * 64) != sizeof(buf) ||
		    pread(file, buf, sizeof(buf), (i % 16) * 64) != sizeof(buf) ||
		    lseek(file, 0, SEEK_SET) != 0 || read(file, buf, 8) != 8 || write(null, buf, 8) != 8)
			return 1;
		close(dup(file));
	}
	for (i = 0; i < 10; i++)
		sum += call_adder(tramp, i);
	tw_emit("VAL io n=%ld sum=%ld", n, sum);
	return 0;
}

int main(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : "";
	int rc;

	tw_init();
	if (!strcmp(s, "regs"))
		rc = scenario_regs();
	else if (!strcmp(s, "repeat"))
		rc = scenario_repeat();
	else if (!strcmp(s, "stack"))
		rc = scenario_stack(argc, argv);
	else if (!strcmp(s, "allowed"))
		rc = scenario_allowed();
	else if (!strcmp(s, "second"))
		rc = scenario_second();
	else if (!strcmp(s, "offset"))
		rc = scenario_offset(argc, argv);
	else if (!strcmp(s, "access"))
		rc = scenario_access(argc, argv);
	else if (!strcmp(s, "nocontext"))
		rc = scenario_nocontext(argc, argv);
	else if (!strcmp(s, "unmap"))
		rc = scenario_unmap();
	else if (!strcmp(s, "fork"))
		rc = scenario_fork();
	else if (!strcmp(s, "threads"))
		rc = scenario_threads(argc, argv);
	else if (!strcmp(s, "signals"))
		rc = scenario_signals(argc, argv);
	else if (!strcmp(s, "late_thread"))
		rc = scenario_late_thread();
	else if (!strcmp(s, "exec"))
		rc = scenario_exec(argv);
	else if (!strcmp(s, "exec-check"))
		rc = scenario_exec_check(argc, argv);
	else if (!strcmp(s, "pass"))
		rc = scenario_pass();
	else if (!strcmp(s, "stackfault"))
		rc = scenario_stackfault();
	else if (!strcmp(s, "madvise"))
		rc = scenario_madvise();
	else if (!strcmp(s, "closure"))
		rc = scenario_closure(argc, argv);
	else if (!strcmp(s, "io"))
		rc = scenario_io(argc, argv);
	else {
		fprintf(stderr, "usage: %s SCENARIO [ARGS]\n", argv[0]);
		return 2;
	}
	if (rc == 0)
		tw_emit("DONE");
	return rc;
}
