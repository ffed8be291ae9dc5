/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wx_monitor.bpf.c -- the kernel side of `trampwatch monitor`, loaded by
 * tracer/sources/ebpf_source.py through bcc.
 *
 * It records raw facts (who, which memory syscall, its arguments, its
 * result) and judges nothing: one Python classifier serves this source and
 * the ptrace one. What it does decide is what is worth sending at all, so a
 * busy host does not flood user space:
 *   - only selected processes (pid set with their descendants, comm set,
 *     cgroup set; every non-empty set must match; all empty selects all);
 *   - only calls that can matter for W^X: anything asking for exec, any
 *     mmap/mprotect/mremap/munmap/shmdt of a process that has made memory
 *     executable since its exec ("exec history"), writable shared mappings
 *     of an object (one half of a dual map), every shmat and memfd_create,
 *     brk and personality where READ_IMPLIES_EXEC is involved;
 *   - exec, fork and exit of selected processes, always.
 * Entry and exit are paired here (per-thread `pending` map), so a call
 * crosses once, at its exit, with its entry arguments and its result.
 *
 * Deny rules run at entry: bpf_send_signal(SIGKILL) marks the process, the
 * call runs (or stops early on the fatal signal) and the process dies on
 * the way back to user mode, before any instruction after the syscall.
 *
 * i386 calls (a 32-bit program, or int 0x80 from a 64-bit one) never reach
 * the syscalls:sys_{enter,exit}_* tracepoints -- the kernel's syscall trace
 * events skip compat calls -- so raw_syscalls:sys_{enter,exit} handle them,
 * recognised by TS_COMPAT in the task's thread_info.
 *
 * Build-time knobs (cflags), all required:
 *   WX_RINGBUF_PAGES     ring buffer size in pages (a power of two)
 *   WX_MAX_PROCS         entries of the per-process maps
 *   WX_MAX_TASKS         entries of the per-thread pending map
 *   WX_OFF_*             byte offsets of the kernel structure members read
 *                        here (task_struct, files_struct, fdtable, file,
 *                        dentry, inode, super_block), taken from the running
 *                        kernel's BTF: the installed headers may be for
 *                        another kernel
 *   WX_TS_COMPAT         the thread_info status bit of an i386 syscall
 *   WX_EXIT_HAS_GROUP_DEAD  1 when sched_process_exit has `group_dead`
 */
#include <uapi/linux/audit.h>
#include <uapi/linux/mman.h>
#include <uapi/linux/personality.h>
#include <uapi/linux/ipc.h>
#include <uapi/linux/shm.h>
#include <asm/unistd_32_ia32.h>

#include "wx_record.h"

#define WX_SIGKILL 9
#define WX_PERSONALITY_QUERY 0xffffffffUL

/* Fields of a call kept from entry to exit. */
struct wx_pending {
	__u64 ts;
	__u64 args[6];
	__u32 sys;
	__u32 arch;
	__s32 nr;
	__u32 flags;
	__u32 kill_rule;
	__u32 personality;
	__u32 history_on_success; /* a successful call gives the process exec history */
	__u64 obj_ino;
	__u32 obj_dev;
	__u32 obj_nlink;
	char obj_name[WX_NAME_LEN];
};

BPF_RINGBUF_OUTPUT(records, WX_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, __u64, WX_LOST_SLOTS);
BPF_ARRAY(config, struct wx_config, 1);
BPF_ARRAY(kill_rules, struct wx_kill_rule, WX_MAX_KILL_RULES);
BPF_HASH(sel_pids, __u32, __u8, WX_MAX_PROCS);
BPF_HASH(sel_comms, struct wx_comm, __u8, 256);
BPF_HASH(sel_cgroups, __u64, __u8, 256);
BPF_HASH(exec_history, __u32, __u8, WX_MAX_PROCS);
BPF_HASH(pending, __u32, struct wx_pending, WX_MAX_TASKS);

/* Read a member of a kernel structure at a BTF-derived offset (0 on a fault). */
static __always_inline __u32 kread_u32(void *base, long off)
{
	__u32 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), (char *)base + off);
	return value;
}

static __always_inline __u64 kread_u64(void *base, long off)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), (char *)base + off);
	return value;
}

/*
 * Note which object descriptor `fd` refers to, now, while the call holds it:
 * by the time user space reads /proc the descriptor may be closed (ld.so
 * closes each library right after mapping it).
 */
static __always_inline int read_object(__u64 fd, struct wx_pending *entry)
{
	void *task = (void *)bpf_get_current_task();
	void *files = (void *)kread_u64(task, WX_OFF_TASK_FILES);
	void *fdt = files ? (void *)kread_u64(files, WX_OFF_FILES_FDT) : NULL;

	if (!fdt || fd >= kread_u32(fdt, WX_OFF_FDT_MAX_FDS))
		return 0;
	void *array = (void *)kread_u64(fdt, WX_OFF_FDT_FD);
	void *file = array ? (void *)kread_u64(array, fd * sizeof(void *)) : NULL;
	void *inode = file ? (void *)kread_u64(file, WX_OFF_FILE_INODE) : NULL;

	if (!inode)
		return 0;
	void *sb = (void *)kread_u64(inode, WX_OFF_INODE_SB);
	void *dentry = (void *)kread_u64(file, WX_OFF_FILE_DENTRY);
	void *name = dentry ? (void *)kread_u64(dentry, WX_OFF_DENTRY_NAME) : NULL;

	entry->obj_ino = kread_u64(inode, WX_OFF_INODE_INO);
	entry->obj_nlink = kread_u32(inode, WX_OFF_INODE_NLINK);
	entry->obj_dev = sb ? kread_u32(sb, WX_OFF_SB_DEV) : 0;
	if (name)
		bpf_probe_read_kernel_str(entry->obj_name, sizeof(entry->obj_name), name);
	return 1;
}

static __always_inline void count_lost(int slot)
{
	__u64 *count = lost.lookup(&slot);

	if (count)
		*count += 1;
}

static __always_inline struct wx_config *get_config(void)
{
	int zero = 0;

	return config.lookup(&zero);
}

static __always_inline int selected(struct wx_config *cfg, __u32 tgid)
{
	if (!cfg->active)
		return 0;
	if ((cfg->filters & WX_FILTER_PIDS) && !sel_pids.lookup(&tgid))
		return 0;
	if (cfg->filters & WX_FILTER_COMMS) {
		struct wx_comm key = {};

		bpf_get_current_comm(&key.comm, sizeof(key.comm));
		if (!sel_comms.lookup(&key))
			return 0;
	}
	if (cfg->filters & WX_FILTER_CGROUPS) {
		__u64 cgroup = bpf_get_current_cgroup_id();

		if (!sel_cgroups.lookup(&cgroup))
			return 0;
	}
	return 1;
}

/* The prot a mapping really gets: READ_IMPLIES_EXEC turns read into exec. */
static __always_inline __u32 effective_prot(__u64 prot, int rie)
{
	__u32 bits = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);

	if (rie && (bits & PROT_READ))
		bits |= PROT_EXEC;
	return bits;
}

/* Index of the first kill rule the call matches, or -1. */
static __always_inline int matching_rule(struct wx_config *cfg, __u32 sys, __u32 prot, __u64 flags)
{
	__u32 nrules = cfg->nrules;

#pragma unroll
	for (int i = 0; i < WX_MAX_KILL_RULES; i++) {
		int key = i;
		struct wx_kill_rule *rule;

		if (i >= nrules)
			break;
		rule = kill_rules.lookup(&key);
		if (!rule || rule->sys != sys)
			continue;
		if ((prot & rule->prot_all) != rule->prot_all)
			continue;
		if ((flags & rule->flags_all) != rule->flags_all || (flags & rule->flags_none))
			continue;
		return i;
	}
	return -1;
}

/*
 * A memory syscall enters: decide whether it can matter, apply the kill
 * rules, and keep its arguments for the exit.
 */
static __always_inline int wx_enter(__u32 sys, __u32 arch, __s32 nr, __u64 *argv, __u32 flags_in)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = id;
	struct wx_config *cfg = get_config();

	if (!cfg || !selected(cfg, tgid))
		return 0;

	void *task = (void *)bpf_get_current_task();
	__u32 persona = kread_u32(task, WX_OFF_TASK_PERSONALITY);
	int rie = (persona & READ_IMPLIES_EXEC) != 0;
	__u8 *seen = exec_history.lookup(&tgid);
	/* Read the value: the verifier forbids arithmetic on the pointer itself. */
	int history = seen ? *seen : 0;
	__u32 prot = 0;
	__u64 flags = 0;
	int wanted = 0;
	int gives_history = 0;

	/* ipc(SHMAT, shmid, shmflg, &result, shmaddr) keeps shmflg where shmat has it: argv[2]. */
	switch (sys) {
	case WX_SYS_MMAP:
		prot = effective_prot(argv[2], rie);
		flags = argv[3];
		/* Every mapping: a new region is what a later exec gain (w-to-x,
		 * anon-exec, execmod, dual-map) is judged on, and mmap is rare next
		 * to the mprotect flips that stay in the kernel. */
		wanted = 1;
		/* ld.so's read+exec private file mappings are every program's: no history from them. */
		gives_history = (prot & PROT_EXEC) &&
				((flags & MAP_ANONYMOUS) || (prot & PROT_WRITE) || (flags & MAP_TYPE) != MAP_PRIVATE);
		break;
	case WX_SYS_MPROTECT:
	case WX_SYS_PKEY_MPROTECT:
		prot = effective_prot(argv[2], rie);
		wanted = (prot & PROT_EXEC) || history;
		gives_history = (prot & PROT_EXEC) != 0;
		break;
	case WX_SYS_MREMAP:
		/* Rare, and it moves a region's history (mremap of written code). */
		flags = argv[3];
		wanted = 1;
		break;
	case WX_SYS_MUNMAP:
	case WX_SYS_SHMDT:
		wanted = history;
		break;
	case WX_SYS_BRK:
		/* brk(0) only asks where the break is; every brk is sent (they are
		 * rare: malloc grows the heap in large steps) so the heap, writable
		 * memory that can later be made executable, is known. */
		if (argv[0])
			prot = PROT_READ | PROT_WRITE | (rie ? PROT_EXEC : 0);
		wanted = 1;
		gives_history = (prot & PROT_EXEC) != 0;
		break;
	case WX_SYS_SHMAT:
		flags = argv[2];
		prot = PROT_READ | ((flags & SHM_RDONLY) ? 0 : PROT_WRITE) | ((flags & SHM_EXEC) ? PROT_EXEC : 0);
		wanted = 1;
		gives_history = (prot & PROT_EXEC) != 0;
		break;
	case WX_SYS_MEMFD_CREATE:
		flags = argv[1];
		wanted = 1;
		break;
	case WX_SYS_PERSONALITY:
		if (argv[0] != WX_PERSONALITY_QUERY) {
			prot = (argv[0] & READ_IMPLIES_EXEC) ? PROT_EXEC : 0;
			wanted = prot || rie;
			gives_history = prot != 0;
		}
		break;
	default:
		return 0;
	}

	int rule = cfg->nrules ? matching_rule(cfg, sys, prot, flags) : -1;
	__u32 out_flags = flags_in;

	if (rule >= 0 && cfg->enforce && bpf_send_signal(WX_SIGKILL) == 0)
		out_flags |= WX_F_KILLED;
	if (!wanted && !(out_flags & WX_F_KILLED))
		return 0;

	struct wx_pending entry = {};

	entry.ts = bpf_ktime_get_ns();
#pragma unroll
	for (int i = 0; i < 6; i++)
		entry.args[i] = argv[i];
	entry.sys = sys;
	entry.arch = arch;
	entry.nr = nr;
	entry.flags = out_flags;
	entry.kill_rule = rule >= 0 ? rule : 0;
	entry.personality = persona;
	entry.history_on_success = gives_history;
	if (sys == WX_SYS_MMAP && !(flags & MAP_ANONYMOUS) && (__s32)argv[4] >= 0 &&
	    read_object((__u32)argv[4], &entry))
		entry.flags |= WX_F_OBJECT;
	if (pending.update(&tid, &entry))
		count_lost(WX_LOST_PENDING);
	return 0;
}

static __always_inline void fill_common(struct wx_record *rec, __u32 kind, void *task)
{
	__u64 id = bpf_get_current_pid_tgid();

	__builtin_memset(rec, 0, sizeof(*rec));
	rec->kind = kind;
	rec->tgid = id >> 32;
	rec->tid = id;
	rec->uid = bpf_get_current_uid_gid();
	rec->cgroup = bpf_get_current_cgroup_id();
	rec->personality = kread_u32(task, WX_OFF_TASK_PERSONALITY);
	bpf_get_current_comm(&rec->comm, sizeof(rec->comm));
}

/* A memory syscall exits: send its one record if its entry was kept. */
static __always_inline int wx_exit(__u32 arch, __s32 nr, __s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = id;
	struct wx_pending *entry = pending.lookup(&tid);

	if (!entry)
		return 0;
	if (entry->arch != arch || entry->nr != nr) {
		/* Left by a call whose exit we never saw (attached mid-call). */
		pending.delete(&tid);
		return 0;
	}
	int failed = ret < 0 && ret > -4096;

	if (!failed && entry->history_on_success) {
		__u8 one = 1;

		exec_history.update(&tgid, &one);
	}
	/* i386 ipc(SHMAT) returns 0 and stores the address at *third. */
	if (!failed && arch == AUDIT_ARCH_I386 && nr == __NR_ia32_ipc && entry->sys == WX_SYS_SHMAT) {
		__u32 addr = 0;

		if (bpf_probe_read_user(&addr, sizeof(addr), (void *)entry->args[3]) == 0)
			ret = addr;
	}

	struct wx_record *rec = records.ringbuf_reserve(sizeof(struct wx_record));

	if (!rec) {
		count_lost(WX_LOST_RINGBUF);
		pending.delete(&tid);
		return 0;
	}
	fill_common(rec, WX_KIND_SYSCALL, (void *)bpf_get_current_task());
	rec->ts = entry->ts;
#pragma unroll
	for (int i = 0; i < 6; i++)
		rec->args[i] = entry->args[i];
	rec->ret = ret;
	rec->arch = arch;
	rec->nr = nr;
	rec->flags = entry->flags;
	rec->kill_rule = entry->kill_rule;
	/* The persona the call was judged under, not one it just set. */
	rec->personality = entry->personality;
	rec->obj_ino = entry->obj_ino;
	rec->obj_dev = entry->obj_dev;
	rec->obj_nlink = entry->obj_nlink;
	__builtin_memcpy(rec->obj_name, entry->obj_name, sizeof(rec->obj_name));
	records.ringbuf_submit(rec, 0);
	pending.delete(&tid);
	return 0;
}

/* --- x86-64: one tracepoint pair per syscall --------------------------------- */

#define WX_ENTER64(name, sys, a0, a1, a2, a3, a4, a5)                              \
	TRACEPOINT_PROBE(syscalls, sys_enter_##name)                               \
	{                                                                          \
		__u64 args6[6] = {a0, a1, a2, a3, a4, a5};                         \
		return wx_enter(sys, AUDIT_ARCH_X86_64, args->__syscall_nr, args6, 0); \
	}                                                                          \
	TRACEPOINT_PROBE(syscalls, sys_exit_##name)                                \
	{                                                                          \
		return wx_exit(AUDIT_ARCH_X86_64, args->__syscall_nr, args->ret);  \
	}

WX_ENTER64(mmap, WX_SYS_MMAP, args->addr, args->len, args->prot, args->flags, args->fd, args->off)
WX_ENTER64(mprotect, WX_SYS_MPROTECT, args->start, args->len, args->prot, 0, 0, 0)
WX_ENTER64(pkey_mprotect, WX_SYS_PKEY_MPROTECT, args->start, args->len, args->prot, args->pkey, 0, 0)
WX_ENTER64(mremap, WX_SYS_MREMAP, args->addr, args->old_len, args->new_len, args->flags, args->new_addr, 0)
WX_ENTER64(munmap, WX_SYS_MUNMAP, args->addr, args->len, 0, 0, 0, 0)
WX_ENTER64(brk, WX_SYS_BRK, args->brk, 0, 0, 0, 0, 0)
WX_ENTER64(shmat, WX_SYS_SHMAT, args->shmid, (__u64)args->shmaddr, args->shmflg, 0, 0, 0)
WX_ENTER64(shmdt, WX_SYS_SHMDT, (__u64)args->shmaddr, 0, 0, 0, 0, 0)
WX_ENTER64(memfd_create, WX_SYS_MEMFD_CREATE, (__u64)args->uname, args->flags, 0, 0, 0, 0)
WX_ENTER64(personality, WX_SYS_PERSONALITY, args->personality, 0, 0, 0, 0, 0)

/* --- i386: the raw syscall tracepoints, compat calls only ----------------------- */

static __always_inline int in_compat_syscall_now(void)
{
	return (kread_u32((void *)bpf_get_current_task(), WX_OFF_TASK_TI_STATUS) & WX_TS_COMPAT) != 0;
}

/* The family of an i386 syscall number (ipc by its call), or WX_SYS_NONE. */
static __always_inline __u32 compat_family(long nr, __u64 ipc_call)
{
	switch (nr) {
	case __NR_ia32_mmap:
	case __NR_ia32_mmap2:
		return WX_SYS_MMAP;
	case __NR_ia32_mprotect:
		return WX_SYS_MPROTECT;
	case __NR_ia32_pkey_mprotect:
		return WX_SYS_PKEY_MPROTECT;
	case __NR_ia32_mremap:
		return WX_SYS_MREMAP;
	case __NR_ia32_munmap:
		return WX_SYS_MUNMAP;
	case __NR_ia32_brk:
		return WX_SYS_BRK;
	case __NR_ia32_shmat:
		return WX_SYS_SHMAT;
	case __NR_ia32_shmdt:
		return WX_SYS_SHMDT;
	case __NR_ia32_memfd_create:
		return WX_SYS_MEMFD_CREATE;
	case __NR_ia32_personality:
		return WX_SYS_PERSONALITY;
	case __NR_ia32_ipc:
		if ((ipc_call & 0xffff) == SHMAT)
			return WX_SYS_SHMAT;
		if ((ipc_call & 0xffff) == SHMDT)
			return WX_SYS_SHMDT;
		return WX_SYS_NONE;
	}
	return WX_SYS_NONE;
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
	/* Every syscall of the host comes here: the number is checked first
	 * (no memory read), the task's compat bit only for the few 64-bit
	 * numbers that are also i386 memory calls. */
	long nr = args->id;
	__u32 sys = compat_family(nr, args->args[0] & 0xffffffffULL);

	if (sys == WX_SYS_NONE || !in_compat_syscall_now())
		return 0;

	__u64 a[6];
	__u32 flags = 0;

#pragma unroll
	for (int i = 0; i < 6; i++)
		a[i] = args->args[i] & 0xffffffffULL;
	if (nr == __NR_ia32_mmap) {
		/* old_mmap: one pointer to {addr, len, prot, flags, fd, offset}. */
		__u32 block[6] = {};

		if (bpf_probe_read_user(block, sizeof(block), (void *)a[0]) == 0) {
#pragma unroll
			for (int i = 0; i < 6; i++)
				a[i] = block[i];
		} else {
			flags |= WX_F_ARGS_FAULT;
		}
	}
	return wx_enter(sys, AUDIT_ARCH_I386, nr, a, flags);
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
	/* ipc's call number is gone at exit: any ipc may be a kept shmat. */
	long nr = args->id;

	if ((nr != __NR_ia32_ipc && compat_family(nr, 0) == WX_SYS_NONE) || !in_compat_syscall_now())
		return 0;
	return wx_exit(AUDIT_ARCH_I386, nr, args->ret);
}

/* --- process lifecycle ------------------------------------------------------------ */

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct wx_config *cfg = get_config();

	/* A new address space: nothing in it was made executable yet. */
	exec_history.delete(&tgid);
	if (!cfg || !selected(cfg, tgid))
		return 0;

	struct wx_exec_record *rec = records.ringbuf_reserve(sizeof(struct wx_exec_record));

	if (!rec) {
		count_lost(WX_LOST_RINGBUF);
		return 0;
	}
	fill_common(&rec->rec, WX_KIND_EXEC, (void *)bpf_get_current_task());
	rec->rec.ts = bpf_ktime_get_ns();
	rec->rec.args[0] = args->old_pid;
	rec->filename[0] = 0;
	TP_DATA_LOC_READ_STR(rec->filename, filename, sizeof(rec->filename));
	records.ringbuf_submit(rec, 0);
	return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	void *parent = (void *)ctx->args[0];
	void *child = (void *)ctx->args[1];
	__u64 child_mm = kread_u64(child, WX_OFF_TASK_MM);

	if (!child_mm)
		return 0; /* a kernel thread */

	__u32 child_tid = kread_u32(child, WX_OFF_TASK_PID);
	__u32 child_tgid = kread_u32(child, WX_OFF_TASK_TGID);
	__u32 tgid = kread_u32(parent, WX_OFF_TASK_TGID);
	int thread = child_tgid == tgid;
	struct wx_config *cfg = get_config();
	__u8 one = 1;

	if (!cfg)
		return 0;
	if (!thread) {
		/* A copy of the address space keeps what was made executable in it. */
		if (exec_history.lookup(&tgid))
			exec_history.update(&child_tgid, &one);
		if ((cfg->filters & WX_FILTER_PIDS) && sel_pids.lookup(&tgid))
			sel_pids.update(&child_tgid, &one);
	}
	if (!selected(cfg, tgid))
		return 0;

	struct wx_record *rec = records.ringbuf_reserve(sizeof(struct wx_record));

	if (!rec) {
		count_lost(WX_LOST_RINGBUF);
		return 0;
	}
	fill_common(rec, WX_KIND_FORK, parent);
	rec->ts = bpf_ktime_get_ns();
	rec->args[0] = child_tid;
	rec->args[1] = child_tgid;
	rec->flags = (thread ? WX_F_THREAD : 0) |
		     (child_mm == kread_u64(parent, WX_OFF_TASK_MM) ? WX_F_SHARES_VM : 0);
	records.ringbuf_submit(rec, 0);
	return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = id;
	void *task = (void *)bpf_get_current_task();
	struct wx_config *cfg = get_config();
#if WX_EXIT_HAS_GROUP_DEAD
	int group_dead = args->group_dead;
#else
	int group_dead = tid == tgid;
#endif

	pending.delete(&tid);
	if (cfg && selected(cfg, tgid)) {
		struct wx_record *rec = records.ringbuf_reserve(sizeof(struct wx_record));

		if (rec) {
			fill_common(rec, WX_KIND_EXIT, task);
			rec->ts = bpf_ktime_get_ns();
			rec->ret = (__s32)kread_u32(task, WX_OFF_TASK_EXIT_CODE);
			rec->flags = group_dead ? WX_F_GROUP_DEAD : 0;
			records.ringbuf_submit(rec, 0);
		} else {
			count_lost(WX_LOST_RINGBUF);
		}
	}
	if (group_dead) {
		exec_history.delete(&tgid);
		sel_pids.delete(&tgid);
	}
	return 0;
}
