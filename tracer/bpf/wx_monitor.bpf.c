/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wx_monitor.bpf.c -- the kernel side of `trampwatch monitor`, loaded by
 * tracer/sources/ebpf_loader.py through bcc (ebpf_source.py sets its maps).
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
 * Entry and exit are paired here (per-thread `pending` task storage), so a call
 * crosses once, at its exit, with its entry arguments and its result.
 *
 * Deny rules run at entry: bpf_send_signal(SIGKILL) marks the process, the
 * call runs (or stops early on the fatal signal) and the process dies on
 * the way back to user mode, before any instruction after the syscall.
 *
 * Syscalls are seen at raw_syscalls:sys_{enter,exit} through raw tracepoint
 * programs, one pair for both ABIs: the per-syscall syscalls:sys_*_<name>
 * events never fire for i386 calls (a 32-bit program, or int 0x80 from a
 * 64-bit one; recognised here by TS_COMPAT in the task's thread_info), and
 * a perf-event tracepoint program costs a copied record per call. Measured
 * on a 6.18 VM: an empty sys_enter_mprotect/sys_exit_mprotect pair adds
 * 0.30 us to every mprotect, an empty raw pair 0.15 us (docs/monitor.md).
 *
 * Build-time knobs (cflags), all required:
 *   WX_RINGBUF_PAGES     ring buffer size in pages (a power of two)
 *   WX_MAX_PROCS         entries of the per-process maps
 *   WX_OFF_*             byte offsets of the kernel structure members read
 *                        here (task_struct, files_struct, fdtable, file,
 *                        dentry, inode, super_block), taken from the running
 *                        kernel's BTF: the installed headers may be for
 *                        another kernel
 *   WX_TS_COMPAT         the thread_info status bit of an i386 syscall
 *   WX_EXIT_HAS_GROUP_DEAD  1 when sched_process_exit has `group_dead`
 *   WX_EXE_PATH          1 when BTF gives the dentry and mount members the
 *                        executable's path is walked with (WX_OFF_* too)
 *   WX_VMA_WALK          1 when the mm's VMAs are in a maple tree laid out as
 *                        WX_OFF_MT_* say (Linux 6.1 on); 0 records only the
 *                        mm's stack and brk addresses (region_flags say so)
 *   WX_REPEATS           1: count equal repeatable calls in `repeats` (below)
 *   WX_MAX_REPEAT_KEYS   entries of the `repeats` map
 *
 * bpf_find_vma() would find a VMA for us, but it takes a callback, and bcc
 * (0.26, iovisor/bcc#3418) does not relocate callback functions: the
 * verifier refuses the call ("R3 type=scalar expected=func"). The VMA tree
 * is walked here instead, as mtree_lookup_walk() does, with probe reads.
 */
#include <uapi/linux/audit.h>
#include <uapi/linux/mman.h>
#include <uapi/linux/personality.h>
#include <uapi/linux/ipc.h>
#include <uapi/linux/shm.h>
#include <asm/unistd_32_ia32.h>
#include <asm/unistd_64.h>

#include "wx_record.h"

#define WX_SIGKILL 9
#define WX_PERSONALITY_QUERY 0xffffffffUL
/* prctl's option that rewrites the kernel's record of the layout (uapi/linux/prctl.h). */
#define WX_PR_SET_MM 35

/* Fields of a call kept from entry to exit. */
struct wx_pending {
	__u64 ts;
	__u32 active; /* kept at entry, not yet sent at exit */
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
	/* WX_F_REGION: the range's VMAs at entry. */
	__u64 start_stack;
	__u64 start_brk;
	__u64 brk;
	__u64 mm;
	__u32 nparts;
	__u32 region_flags;
	__u32 repeatable; /* a repeat key if the call succeeds */
	__u32 rie;
	__u32 prot;
	__u64 start;
	__u64 end;
	struct wx_part parts[WX_MAX_PARTS];
};

BPF_RINGBUF_OUTPUT(records, WX_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, __u64, WX_LOST_SLOTS);
BPF_PERCPU_ARRAY(since_wakeup, __u64, 1);
BPF_ARRAY(config, struct wx_config, 1);
BPF_ARRAY(kill_rules, struct wx_kill_rule, WX_MAX_KILL_RULES);
BPF_HASH(sel_pids, __u32, __u8, WX_MAX_PROCS);
BPF_HASH(sel_comms, struct wx_comm, __u8, 256);
BPF_HASH(sel_cgroups, __u64, __u8, 256);
BPF_HASH(exec_history, __u32, __u8, WX_MAX_PROCS);
BPF_TASK_STORAGE(pending, struct wx_pending);
BPF_HASH(repeats, struct wx_repeat_key, struct wx_repeat_count, WX_MAX_REPEAT_KEYS);
/* Calls counted in `repeats` so far (per CPU): user space reads the map only when this grew. */
BPF_PERCPU_ARRAY(repeated, __u64, 1);

/* Read a member of a kernel structure at a BTF-derived offset (0 on a fault). */
static __always_inline __u32 kread_u32(void *base, long off)
{
	__u32 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), (char *)base + off);
	return value;
}

/*
 * Read a member of the current task directly: `task` is the BTF pointer of
 * bpf_get_current_task_btf(), so the verifier checks the offset against the
 * kernel's own description of task_struct and the load is one instruction,
 * where a bpf_probe_read_kernel() call costs ~25 ns.
 */
static __always_inline __u32 task_u32(struct task_struct *task, long off)
{
	return *(__u32 *)((char *)task + off);
}

static __always_inline __u64 kread_u64(void *base, long off)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), (char *)base + off);
	return value;
}

/* The identity of the file behind a `struct file *`: inode, dev, link count, dentry name. */
static __always_inline int read_file(void *file, __u64 *ino, __u32 *dev, __u32 *nlink, char *name, int size)
{
	void *inode = file ? (void *)kread_u64(file, WX_OFF_FILE_INODE) : NULL;

	if (!inode)
		return 0;
	void *sb = (void *)kread_u64(inode, WX_OFF_INODE_SB);
	void *dentry = (void *)kread_u64(file, WX_OFF_FILE_DENTRY);
	void *dname = dentry ? (void *)kread_u64(dentry, WX_OFF_DENTRY_NAME) : NULL;

	*ino = kread_u64(inode, WX_OFF_INODE_INO);
	*nlink = kread_u32(inode, WX_OFF_INODE_NLINK);
	*dev = sb ? kread_u32(sb, WX_OFF_SB_DEV) : 0;
	if (dname)
		bpf_probe_read_kernel_str(name, size, dname);
	return 1;
}

/* VM_* bits of vm_area_struct.vm_flags (include/linux/mm.h; unchanged since 2.6). */
#define WX_VM_READ 0x1
#define WX_VM_WRITE 0x2
#define WX_VM_EXEC 0x4
#define WX_VM_SHARED 0x8
#define WX_VM_GROWSDOWN 0x100

#if WX_VMA_WALK
/* The maple tree's node encoding (lib/maple_tree.c, include/linux/maple_tree.h). */
#define WX_MT_NODE_MASK 255ULL
#define WX_MT_TYPE(enode) (((enode) >> 3) & 0xf)
#define WX_MAPLE_LEAF_64 1
#define WX_MAPLE_RANGE_64 2
#define WX_MAPLE_ARANGE_64 3
#define WX_MT_RANGE64_PIVOTS 15
#define WX_MT_ARANGE64_PIVOTS 9
#define WX_MT_MAX_DEPTH 8
#define WX_VMA_WORDS (WX_VMA_READ_LEN / 8)

/* What vma_at() returns when it gives up: no VMA is at an odd address. */
#define WX_WALK_FAILED 1ULL

/*
 * The entry of the maple tree rooted at `root` that holds `addr`: a VMA, 0 in
 * a hole, or WX_WALK_FAILED when the walk gives up (deeper than WX_MT_MAX_DEPTH, a node
 * freed under us, an unreadable node). mtree_lookup_walk(), with probe reads:
 * the tree may change meanwhile (another thread's mmap), and nodes are freed
 * only after an RCU grace period, which this program's run holds off.
 */
static __always_inline __u64 vma_at(__u64 root, __u64 addr)
{
	__u64 next = root;

	if (!next)
		return 0;
	if ((next & 3) != 2 || next <= 4096)
		return WX_WALK_FAILED; /* a single entry at index 0: never an mm's tree */
	for (int depth = 0; depth < WX_MT_MAX_DEPTH; depth++) {
		__u64 node = next & ~WX_MT_NODE_MASK;
		__u32 type = WX_MT_TYPE(next);
		/* parent, then the pivots (both node types keep them right after parent) */
		__u64 head[1 + WX_MT_RANGE64_PIVOTS];
		int pivots;
		long slots;

		if (type == WX_MAPLE_ARANGE_64) {
			pivots = WX_MT_ARANGE64_PIVOTS;
			slots = WX_OFF_MA64_SLOT;
		} else if (type == WX_MAPLE_RANGE_64 || type == WX_MAPLE_LEAF_64) {
			pivots = WX_MT_RANGE64_PIVOTS;
			slots = WX_OFF_MR64_SLOT;
		} else {
			return WX_WALK_FAILED;
		}
		if (bpf_probe_read_kernel(head, sizeof(head), (void *)node))
			return WX_WALK_FAILED;
		if ((head[0] & ~WX_MT_NODE_MASK) == node)
			return WX_WALK_FAILED; /* ma_dead_node(): freed while we looked */
		int offset = pivots;

		for (int i = 0; i < WX_MT_RANGE64_PIVOTS; i++) {
			if (i < pivots && head[1 + i] >= addr) {
				offset = i;
				break;
			}
		}
		__u64 slot = 0;

		if (bpf_probe_read_kernel(&slot, sizeof(slot), (void *)(node + slots + offset * 8)))
			return WX_WALK_FAILED;
		if (type == WX_MAPLE_LEAF_64)
			return slot;
		if (!slot)
			return WX_WALK_FAILED;
		next = slot;
	}
	return WX_WALK_FAILED;
}

/* Describe the VMA at `vma` in `part`; return its end. */
static __always_inline __u64 read_part(__u64 vma, __u64 start_stack, __u64 start_brk, __u64 brk,
				       struct wx_part *part)
{
	__u64 v[WX_VMA_WORDS] = {};

	if (bpf_probe_read_kernel(v, sizeof(v), (void *)vma))
		return 0;
	__u64 start = v[WX_OFF_VMA_START / 8];
	__u64 end = v[WX_OFF_VMA_END / 8];
	__u64 vm_flags = v[WX_OFF_VMA_FLAGS / 8];
	void *file = (void *)v[WX_OFF_VMA_FILE / 8];
	__u32 flags = vm_flags & (WX_VM_READ | WX_VM_WRITE | WX_VM_EXEC);
	__u32 nlink = 1;

	if (vm_flags & WX_VM_SHARED)
		flags |= WX_P_SHARED;
	if (vm_flags & WX_VM_GROWSDOWN)
		flags |= WX_P_GROWSDOWN;
	/* As /proc names them (vma_is_initial_stack, vma_is_initial_heap). */
	if (start <= start_stack && start_stack <= end)
		flags |= WX_P_STACK;
	if (start < brk && end > start_brk)
		flags |= WX_P_HEAP;
	if (file) {
		flags |= WX_P_FILE;
		read_file(file, &part->ino, &part->dev, &nlink, part->name, sizeof(part->name));
		if (!nlink)
			flags |= WX_P_UNLINKED;
	} else if (v[WX_OFF_VMA_OPS / 8]) {
		flags |= WX_P_SPECIAL; /* vma_is_anonymous() is !vm_ops */
	}
	part->start = start;
	part->end = end;
	part->flags = flags;
	return end;
}
#endif

/*
 * Fill `entry`'s region fields with the VMAs of [start, end) in the current
 * task's address space, as they are now, before the call changes them.
 */
static __always_inline void read_region(struct task_struct *task, __u64 start, __u64 end, struct wx_pending *entry)
{
	char *mm = *(char **)((char *)task + WX_OFF_TASK_MM);

	if (!mm) {
		entry->region_flags = WX_R_FAILED;
		return;
	}
	entry->mm = (__u64)mm;
	entry->start_stack = *(__u64 *)(mm + WX_OFF_MM_START_STACK);
	entry->start_brk = *(__u64 *)(mm + WX_OFF_MM_START_BRK);
	entry->brk = *(__u64 *)(mm + WX_OFF_MM_BRK);
#if WX_VMA_WALK
	__u64 root = *(__u64 *)(mm + WX_OFF_MM_MT_ROOT);
	__u64 addr = start;
	__u32 flags = WX_R_WALKED;
	__u32 n = 0;

	for (int i = 0; i < WX_MAX_PARTS; i++) {
		if (addr >= end)
			break;
		__u64 vma = vma_at(root, addr);

		if (vma == WX_WALK_FAILED) {
			entry->region_flags = WX_R_FAILED;
			entry->nparts = 0;
			return;
		}
		if (!vma) {
			/* A hole: mprotect fails with ENOMEM; mremap with EFAULT. */
			flags |= WX_R_HOLE;
			break;
		}
		__u64 next = read_part(vma, entry->start_stack, entry->start_brk, entry->brk, &entry->parts[i]);

		if (!next) {
			entry->region_flags = WX_R_FAILED;
			entry->nparts = 0;
			return;
		}
		n++;
		addr = next;
	}
	if (addr < end && !(flags & WX_R_HOLE))
		flags |= WX_R_MORE;
	entry->nparts = n;
	entry->region_flags = flags;
#endif
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

	return read_file(file, &entry->obj_ino, &entry->obj_dev, &entry->obj_nlink, entry->obj_name,
			 sizeof(entry->obj_name));
}

/*
 * How to submit a syscall record: wake the reader once per WX_WAKEUP_EVERY
 * records of this CPU, a sixteenth of what the buffer holds. Each wake-up
 * costs the calling thread ~10 us on a VM (an interrupt to itself and one
 * to the reader's CPU): measured, one every 8 records adds 1.4 us to each
 * call, one every 1024 nothing visible. User space also takes what is in
 * the buffer at every poll timeout, so a quiet host's records wait at most
 * that long.
 */
#define WX_RECORDS_IN_BUFFER (WX_RINGBUF_PAGES * 4096ULL / (sizeof(struct wx_record) + 8))
#define WX_WAKEUP_EVERY (WX_RECORDS_IN_BUFFER / 16 ? WX_RECORDS_IN_BUFFER / 16 : 1)

static __always_inline __u64 call_wakeup(void)
{
	int zero = 0;
	__u64 *count = since_wakeup.lookup(&zero);

	if (!count)
		return 0;
	*count += 1;
	return *count % WX_WAKEUP_EVERY ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
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
		/* The process's name (its leader's comm, as ps shows it), so a
		 * thread that names itself stays selected with its process. */
		char *task = (char *)bpf_get_current_task_btf();
		char *leader = *(char **)(task + WX_OFF_TASK_GROUP_LEADER);
		union {
			struct wx_comm key;
			__u64 words[WX_COMM_LEN / 8];
		} name;

		name.words[0] = *(__u64 *)(leader + WX_OFF_TASK_COMM);
		name.words[1] = *(__u64 *)(leader + WX_OFF_TASK_COMM + 8);
		if (!sel_comms.lookup(&name.key))
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
 * A memory syscall of a selected process enters: decide whether it can
 * matter, apply the kill rules, and keep its arguments for the exit.
 */
static __always_inline int wx_enter(struct wx_config *cfg, __u32 sys, __u32 arch, __s32 nr, __u64 *argv,
				    __u32 flags_in)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 persona = task_u32(bpf_get_current_task_btf(), WX_OFF_TASK_PERSONALITY);
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
	case WX_SYS_PRCTL_MM:
		/* Every other prctl option is none of ours. */
		if ((__u32)argv[0] != WX_PR_SET_MM)
			return 0;
		wanted = 1;
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

	/* The thread's entry lives as long as the thread; made on its first kept call. */
	struct wx_pending *entry = pending.task_storage_get(bpf_get_current_task_btf(), 0,
							   BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!entry) {
		count_lost(WX_LOST_PENDING);
		return 0;
	}
	__builtin_memset(entry, 0, sizeof(*entry));
	entry->ts = bpf_ktime_get_ns();
#pragma unroll
	for (int i = 0; i < 6; i++)
		entry->args[i] = argv[i];
	entry->sys = sys;
	entry->arch = arch;
	entry->nr = nr;
	entry->flags = out_flags;
	entry->kill_rule = rule >= 0 ? rule : 0;
	entry->personality = persona;
	entry->history_on_success = gives_history;
	if (sys == WX_SYS_MMAP && !(flags & MAP_ANONYMOUS) && (__s32)argv[4] >= 0 &&
	    read_object((__u32)argv[4], entry))
		entry->flags |= WX_F_OBJECT;
	if (sys == WX_SYS_MPROTECT || sys == WX_SYS_PKEY_MPROTECT || sys == WX_SYS_MREMAP) {
		/* mremap's old_size 0 makes a second view of one page's object at least. */
		__u64 len = argv[1] ? argv[1] : 1;
		__u64 start = argv[0] & ~4095ULL;
		__u64 end = (argv[0] + len + 4095) & ~4095ULL;

		read_region(bpf_get_current_task_btf(), start, end, entry);
		entry->flags |= WX_F_REGION;
		entry->rie = rie;
		entry->prot = prot;
		entry->start = start;
		entry->end = end;
		if (WX_REPEATS && sys != WX_SYS_MREMAP && arch == AUDIT_ARCH_X86_64 && !(out_flags & WX_F_KILLED) &&
		    entry->region_flags == WX_R_WALKED && entry->nparts == 1) {
			__u32 part = entry->parts[0].flags;

			/* One private anonymous VMA holds the whole range, and the
			 * judgement cannot depend on its history: it was writable
			 * (so gaining exec is w-to-x whatever came before), or the
			 * call asks for no exec (nothing is gained). */
			entry->repeatable = entry->parts[0].start <= start && end <= entry->parts[0].end &&
					    !(part & (WX_P_FILE | WX_P_SPECIAL | WX_P_SHARED)) &&
					    ((part & WX_P_WRITE) || !(prot & PROT_EXEC));
		}
	}
	entry->active = 1;
	return 0;
}

/* Whether the current syscall is an i386 one (a 32-bit program, or int 0x80 from a 64-bit one). */
static __always_inline int in_compat_syscall_now(void)
{
	return (task_u32(bpf_get_current_task_btf(), WX_OFF_TASK_TI_STATUS) & WX_TS_COMPAT) != 0;
}

/* Zero a record and fill in its kind and the current thread. */
static __always_inline void fill_common(struct wx_record *rec, __u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid();

	__builtin_memset(rec, 0, sizeof(*rec));
	rec->kind = kind;
	rec->tgid = id >> 32;
	rec->tid = id;
}

/* Every field of a syscall's record, from its kept entry and its exit. */
static __always_inline void fill_call(struct wx_record *rec, struct wx_pending *entry, __u32 arch, __s32 nr,
				      __s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();

	rec->ts = entry->ts;
#pragma unroll
	for (int i = 0; i < 6; i++)
		rec->args[i] = entry->args[i];
	rec->ret = ret;
	rec->kind = WX_KIND_SYSCALL;
	rec->tgid = id >> 32;
	rec->tid = id;
	rec->arch = arch;
	rec->nr = nr;
	rec->flags = entry->flags;
	rec->kill_rule = entry->kill_rule;
	/* The persona the call was judged under, not one it just set. */
	rec->personality = entry->personality;
}

/*
 * Send a call with its region, or count it: a successful call equal to one
 * already sent (same address space, range, asked prot, VMA flags before it)
 * whose judgement cannot differ is counted in `repeats` instead. The first
 * call of a key is sent with WX_F_REPEAT_KEY, so user space has judged it
 * before it reads any count of it.
 */
static __always_inline int send_region(struct wx_pending *entry, __u32 arch, __s32 nr, __s64 ret, int failed)
{
	__u32 extra = 0;
	struct wx_repeat_key key = {};
	int keyed = entry->repeatable && !failed;

	if (keyed) {
		__u64 id = bpf_get_current_pid_tgid();

		key.mm = entry->mm;
		key.start = entry->start;
		key.end = entry->end;
		key.tgid = id >> 32;
		key.sys = entry->sys;
		key.prot = entry->prot;
		key.flags = entry->parts[0].flags;
		key.rie = entry->rie;
		struct wx_repeat_count *seen = repeats.lookup(&key);

		if (seen) {
			int zero = 0;
			__u64 *total = repeated.lookup(&zero);

			__sync_fetch_and_add(&seen->count, 1);
			seen->last_ts = entry->ts;
			seen->last_tid = id;
			if (total)
				*total += 1;
			return 0;
		}
	}
	struct wx_region_record *rec = records.ringbuf_reserve(sizeof(struct wx_region_record));

	if (!rec) {
		count_lost(WX_LOST_RINGBUF);
		return 0;
	}
	/* The key exists only once its first call is on its way: a count is
	 * never kept for a key user space has not seen. A full map just means
	 * every call of this key is sent. */
	if (keyed) {
		struct wx_repeat_count fresh = {};

		if (repeats.insert(&key, &fresh) == 0)
			extra = WX_F_REPEAT_KEY;
	}
	fill_call(&rec->rec, entry, arch, nr, ret);
	rec->rec.flags |= extra;
	rec->mm = entry->mm;
	rec->start_stack = entry->start_stack;
	rec->start_brk = entry->start_brk;
	rec->brk = entry->brk;
	rec->nparts = entry->nparts;
	rec->region_flags = entry->region_flags;
	__builtin_memcpy(rec->parts, entry->parts, sizeof(rec->parts));
	records.ringbuf_submit(rec, call_wakeup());
	return 0;
}

/*
 * A syscall exits (`regs` its saved registers): when the thread's entry was
 * kept at this call's entry, send its one record. The entry is looked up
 * first: a thread that never had a call kept has no storage at all, so
 * every other syscall of the host costs one lookup here.
 */
static __always_inline int wx_exit(void *regs, __s64 ret)
{
	struct wx_pending *entry = pending.task_storage_get(bpf_get_current_task_btf(), 0, 0);

	if (!entry || !entry->active)
		return 0;
	entry->active = 0;

	__s32 nr = kread_u64(regs, offsetof(struct pt_regs, orig_ax));
	__u32 arch = in_compat_syscall_now() ? AUDIT_ARCH_I386 : AUDIT_ARCH_X86_64;

	if (entry->arch != arch || entry->nr != nr)
		return 0; /* left by a call whose exit was not seen (the monitor was attaching) */
	int failed = ret < 0 && ret > -4096;

	if (!failed && entry->history_on_success) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		__u8 one = 1;

		exec_history.update(&tgid, &one);
	}
	/* i386 ipc(SHMAT) returns 0 and stores the address at *third. */
	if (!failed && arch == AUDIT_ARCH_I386 && nr == __NR_ia32_ipc && entry->sys == WX_SYS_SHMAT) {
		__u32 addr = 0;

		if (bpf_probe_read_user(&addr, sizeof(addr), (void *)entry->args[3]) == 0)
			ret = addr;
	}

	if (entry->flags & WX_F_REGION)
		return send_region(entry, arch, nr, ret, failed);
	if (!(entry->flags & WX_F_OBJECT)) {
		struct wx_record *rec = records.ringbuf_reserve(sizeof(struct wx_record));

		if (!rec) {
			count_lost(WX_LOST_RINGBUF);
			return 0;
		}
		fill_call(rec, entry, arch, nr, ret);
		records.ringbuf_submit(rec, call_wakeup());
		return 0;
	}
	struct wx_object_record *obj = records.ringbuf_reserve(sizeof(struct wx_object_record));

	if (!obj) {
		count_lost(WX_LOST_RINGBUF);
		return 0;
	}
	fill_call(&obj->rec, entry, arch, nr, ret);
	obj->obj_ino = entry->obj_ino;
	obj->obj_dev = entry->obj_dev;
	obj->obj_nlink = entry->obj_nlink;
	__builtin_memcpy(obj->obj_name, entry->obj_name, sizeof(obj->obj_name));
	records.ringbuf_submit(obj, call_wakeup());
	return 0;
}

/* --- memory syscalls, both ABIs: one raw tracepoint pair --------------------- */

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
	case __NR_ia32_prctl:
		return WX_SYS_PRCTL_MM;
	case __NR_ia32_ipc:
		if ((ipc_call & 0xffff) == SHMAT)
			return WX_SYS_SHMAT;
		if ((ipc_call & 0xffff) == SHMDT)
			return WX_SYS_SHMDT;
		return WX_SYS_NONE;
	}
	return WX_SYS_NONE;
}

/* The family of an x86-64 syscall number, or WX_SYS_NONE. */
static __always_inline __u32 native_family(long nr)
{
	switch (nr) {
	case __NR_mmap:
		return WX_SYS_MMAP;
	case __NR_mprotect:
		return WX_SYS_MPROTECT;
	case __NR_pkey_mprotect:
		return WX_SYS_PKEY_MPROTECT;
	case __NR_mremap:
		return WX_SYS_MREMAP;
	case __NR_munmap:
		return WX_SYS_MUNMAP;
	case __NR_brk:
		return WX_SYS_BRK;
	case __NR_shmat:
		return WX_SYS_SHMAT;
	case __NR_shmdt:
		return WX_SYS_SHMDT;
	case __NR_memfd_create:
		return WX_SYS_MEMFD_CREATE;
	case __NR_personality:
		return WX_SYS_PERSONALITY;
	case __NR_prctl:
		return WX_SYS_PRCTL_MM;
	}
	return WX_SYS_NONE;
}

/* Whether `nr` is a memory call in either table (any i386 ipc counts). */
static __always_inline int memory_number(long nr)
{
	return native_family(nr) != WX_SYS_NONE || nr == __NR_ia32_ipc || compat_family(nr, 0) != WX_SYS_NONE;
}

/*
 * Every syscall of the host passes these two programs: each returns after a
 * switch on the number unless it is a memory call, and reads memory (the
 * selection maps, the task, the saved registers) only then.
 */
RAW_TRACEPOINT_PROBE(sys_enter)
{
	long nr = ctx->args[1];

	if (!memory_number(nr))
		return 0;

	struct wx_config *cfg = get_config();

	if (!cfg || !selected(cfg, bpf_get_current_pid_tgid() >> 32))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	/* A BTF pointer: its members are loaded directly, checked by the verifier. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	__u64 a[6];
	__u32 flags = 0;
	__u32 sys;

	if (!(task_u32(task, WX_OFF_TASK_TI_STATUS) & WX_TS_COMPAT)) {
		sys = native_family(nr);
		if (sys == WX_SYS_NONE)
			return 0;
		a[0] = regs->di;
		a[1] = regs->si;
		a[2] = regs->dx;
		a[3] = regs->r10;
		a[4] = regs->r8;
		a[5] = regs->r9;
		return wx_enter(cfg, sys, AUDIT_ARCH_X86_64, nr, a, 0);
	}
	a[0] = regs->bx & 0xffffffffULL;
	a[1] = regs->cx & 0xffffffffULL;
	a[2] = regs->dx & 0xffffffffULL;
	a[3] = regs->si & 0xffffffffULL;
	a[4] = regs->di & 0xffffffffULL;
	a[5] = regs->bp & 0xffffffffULL;
	sys = compat_family(nr, a[0]);
	if (sys == WX_SYS_NONE)
		return 0;
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
	return wx_enter(cfg, sys, AUDIT_ARCH_I386, nr, a, flags);
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
	return wx_exit((void *)ctx->args[0], ctx->args[1]);
}

/* --- process lifecycle ------------------------------------------------------------ */

#if WX_EXE_PATH
/* Mount crossings and components a path may have before it is not known. */
#define WX_PATH_STEPS 24

/*
 * The path of `file` as d_path() gives /proc/PID/exe, without d_path (which
 * only fentry and LSM programs may call): its dentries' names from the file
 * up, crossing to the parent mount at each mount's root, as prepend_path()
 * does. The walk ends at the root of the mount tree (WX_X_WHOLE), at a
 * dentry no longer connected to it (a memfd, a file of an unmounted tree:
 * not whole), or when the buffer or the step bound runs out.
 */
static __always_inline void exe_path(void *file, struct wx_exec_record *rec)
{
	void *dentry = (void *)kread_u64(file, WX_OFF_FILE_DENTRY);
	char *vfsmnt = (char *)kread_u64(file, WX_OFF_FILE_MNT);
	char *mnt = vfsmnt - WX_OFF_MOUNT_MNT;
	__u32 off = 0;

	for (int i = 0; i < WX_PATH_STEPS && dentry && vfsmnt; i++) {
		void *root = (void *)kread_u64(vfsmnt, WX_OFF_VFSMOUNT_ROOT);
		void *parent = (void *)kread_u64(dentry, WX_OFF_DENTRY_PARENT);

		if (dentry == root || dentry == parent) {
			char *up = (char *)kread_u64(mnt, WX_OFF_MOUNT_PARENT);

			if (dentry != root || up == mnt || !up) {
				if (dentry == root)
					rec->path_flags = WX_X_WHOLE;
				break;
			}
			dentry = (void *)kread_u64(mnt, WX_OFF_MOUNT_MOUNTPOINT);
			mnt = up;
			vfsmnt = mnt + WX_OFF_MOUNT_MNT;
			continue;
		}
		if (off >= WX_EXE_PATH_LEN - WX_NAME_MAX) {
			rec->path_flags = WX_X_TRUNCATED;
			break;
		}
		long n = bpf_probe_read_kernel_str(&rec->path[off & (WX_EXE_PATH_LEN - WX_NAME_MAX - 1)], WX_NAME_MAX,
						   (void *)kread_u64(dentry, WX_OFF_DENTRY_NAME));
		if (n <= 0)
			break;
		off += n;
		dentry = parent;
	}
	rec->path_len = off;
}
#endif

/* The new address space, its executable file and its stack's VMA, at exec. */
static __always_inline void exec_stack(struct task_struct *task, struct wx_exec_record *rec)
{
	char *mm = *(char **)((char *)task + WX_OFF_TASK_MM);
	__u32 nlink = 1;

	if (!mm)
		return;
	rec->mm = (__u64)mm;
	void *file = (void *)kread_u64(mm, WX_OFF_MM_EXE_FILE);

	if (read_file(file, &rec->exe.ino, &rec->exe.dev, &nlink, rec->exe.name, sizeof(rec->exe.name))) {
		rec->exe.flags = WX_P_FILE | (nlink ? 0 : WX_P_UNLINKED);
#if WX_EXE_PATH
		exe_path(file, rec);
#endif
	}
#if WX_VMA_WALK
	__u64 start_stack = *(__u64 *)(mm + WX_OFF_MM_START_STACK);
	__u64 vma = vma_at(*(__u64 *)(mm + WX_OFF_MM_MT_ROOT), start_stack);

	if (vma && vma != WX_WALK_FAILED)
		read_part(vma, start_stack, *(__u64 *)(mm + WX_OFF_MM_START_BRK), *(__u64 *)(mm + WX_OFF_MM_BRK),
			  &rec->stack);
#endif
}

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
	/* Not the path buffer: too big to clear inline, and only its first path_len bytes are read. */
	__builtin_memset(rec, 0, __builtin_offsetof(struct wx_exec_record, path));
	fill_common(&rec->rec, WX_KIND_EXEC);
	rec->uid = bpf_get_current_uid_gid();
	bpf_get_current_comm(&rec->comm, sizeof(rec->comm));
	rec->rec.personality = task_u32(bpf_get_current_task_btf(), WX_OFF_TASK_PERSONALITY);
	rec->rec.ts = bpf_ktime_get_ns();
	rec->rec.args[0] = args->old_pid;
	rec->filename[0] = 0;
	TP_DATA_LOC_READ_STR(rec->filename, filename, sizeof(rec->filename));
	exec_stack(bpf_get_current_task_btf(), rec);
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
	fill_common(rec, WX_KIND_FORK);
	rec->personality = kread_u32(parent, WX_OFF_TASK_PERSONALITY);
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
	struct task_struct *task = bpf_get_current_task_btf();
	struct wx_config *cfg = get_config();
#if WX_EXIT_HAS_GROUP_DEAD
	int group_dead = args->group_dead;
#else
	int group_dead = tid == tgid;
#endif

	if (cfg && selected(cfg, tgid)) {
		struct wx_record *rec = records.ringbuf_reserve(sizeof(struct wx_record));

		if (rec) {
			fill_common(rec, WX_KIND_EXIT);
			rec->personality = task_u32(task, WX_OFF_TASK_PERSONALITY);
			rec->ts = bpf_ktime_get_ns();
			rec->ret = (__s32)task_u32(task, WX_OFF_TASK_EXIT_CODE);
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
