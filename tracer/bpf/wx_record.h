/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wx_record.h -- the one definition of what trampwatch's kernel side tells
 * user space, and of the run-time knobs user space writes back.
 *
 * Included by every tracer/bpf/*.bpf.c file and, in the layout test, by a
 * plain C program that prints offsetof/sizeof of every field, which is
 * compared with the ctypes view in tracer/sources/ebpf_records.py.
 * Only fixed-width types: the same bytes mean the same thing on both sides.
 */
#ifndef WX_RECORD_H
#define WX_RECORD_H

#include <linux/types.h>

#define WX_COMM_LEN 16
#define WX_PATH_LEN 256
#define WX_NAME_LEN 48
#define WX_PART_NAME_LEN 32
#define WX_MAX_KILL_RULES 16
#define WX_MAX_PARTS 2
#define WX_EXE_PATH_LEN 512
#define WX_NAME_MAX 256 /* a path component, with its NUL */

/* What a record reports. */
enum wx_kind {
	WX_KIND_SYSCALL = 1, /* one memory syscall, at its exit, with its entry arguments */
	WX_KIND_EXEC = 2,    /* sched_process_exec: a struct wx_exec_record */
	WX_KIND_FORK = 3,    /* sched_process_fork: a new task */
	WX_KIND_EXIT = 4,    /* sched_process_exit: a task is gone */
};

/*
 * Syscall families: one id for a call however an ABI spells it (x86-64
 * mmap, i386 mmap and mmap2 are all WX_SYS_MMAP; i386 ipc(SHMAT) is
 * WX_SYS_SHMAT). Kill rules name a family.
 */
enum wx_sys {
	WX_SYS_NONE = 0,
	WX_SYS_MMAP = 1,
	WX_SYS_MPROTECT = 2,
	WX_SYS_PKEY_MPROTECT = 3,
	WX_SYS_MREMAP = 4,
	WX_SYS_MUNMAP = 5,
	WX_SYS_BRK = 6,
	WX_SYS_SHMAT = 7,
	WX_SYS_SHMDT = 8,
	WX_SYS_MEMFD_CREATE = 9,
	WX_SYS_PERSONALITY = 10,
	/* prctl(PR_SET_MM, ...) only: the kernel's record of the layout rewritten. */
	WX_SYS_PRCTL_MM = 11,
};

/* wx_record.flags */
#define WX_F_KILLED 0x1     /* syscall: a kill rule matched and SIGKILL was sent at entry */
#define WX_F_ARGS_FAULT 0x2 /* syscall: i386 old_mmap's argument block was unreadable; args are raw */
#define WX_F_THREAD 0x4     /* fork: the child joined the parent's thread group */
#define WX_F_SHARES_VM 0x8  /* fork: the child shares the parent's address space */
#define WX_F_GROUP_DEAD 0x10 /* exit: the last task of its process */
#define WX_F_OBJECT 0x20    /* syscall: obj_* describe the object behind mmap's descriptor */
#define WX_F_REGION 0x40    /* syscall: a struct wx_region_record (mprotect, pkey_mprotect, mremap) */
#define WX_F_REPEAT_KEY 0x80 /* syscall: the first call of a repeat key; later equal calls are counted in `repeats` */

/*
 * One fact; every record starts with this part. Field meaning by kind:
 *   all      ts: bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the syscall's entry
 *               or at the event; tgid/tid of the current task (the parent
 *               for a fork); personality: the task's persona.
 *   SYSCALL  arch: AUDIT_ARCH_X86_64 or AUDIT_ARCH_I386; nr: the syscall
 *               number on that arch; args: the entry arguments (i386 ones
 *               zero-extended; old_mmap's argument block read from memory);
 *               ret: the return value (i386 ipc(SHMAT): the attach address
 *               read from *third when the call succeeded); kill_rule: the
 *               index of the rule that fired when WX_F_KILLED. With
 *               WX_F_OBJECT the record is a struct wx_object_record.
 *   EXEC     a struct wx_exec_record; args[0]: the tid that called execve
 *               (old_pid).
 *   FORK     args[0]: the child's tid, args[1]: the child's tgid.
 *   EXIT     ret: the task's exit_code (a wait status).
 * Kept small (96 bytes, 104 with the ring buffer's header): every byte is
 * written by the calling thread into memory no cache holds yet.
 */
struct wx_record {
	__u64 ts;
	__u64 args[6];
	__s64 ret;
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 arch;
	__s32 nr;
	__u32 flags;
	__u32 personality;
	__u32 kill_rule;
};

/*
 * WX_KIND_SYSCALL with WX_F_OBJECT: the object mmap's descriptor referred to
 * at entry: obj_ino, obj_dev (the kernel's dev_t encoding, major << 20 |
 * minor), obj_nlink (0: unlinked, or never linked like a memfd) and obj_name
 * (its dentry's name, "libc.so.6", "memfd:libffi").
 */
struct wx_object_record {
	struct wx_record rec;
	__u64 obj_ino;
	__u32 obj_dev;
	__u32 obj_nlink;
	char obj_name[WX_NAME_LEN];
};

/*
 * wx_part.flags: one VMA as the kernel had it at the call's entry. The
 * protection bits equal PROT_READ/WRITE/EXEC (the VMA's VM_READ/WRITE/EXEC).
 * STACK and HEAP are the kernel's own tests for /proc's [stack] and [heap]
 * (the VMA holds mm->start_stack; the VMA meets start_brk..brk).
 */
#define WX_P_READ 0x1
#define WX_P_WRITE 0x2
#define WX_P_EXEC 0x4
#define WX_P_SHARED 0x8      /* VM_SHARED */
#define WX_P_GROWSDOWN 0x10  /* VM_GROWSDOWN */
#define WX_P_STACK 0x20      /* the process's stack */
#define WX_P_HEAP 0x40       /* the brk heap */
#define WX_P_FILE 0x80       /* maps a file: ino, dev and name describe it */
#define WX_P_SPECIAL 0x100   /* no file, yet not anonymous memory (vdso, vvar) */
#define WX_P_UNLINKED 0x200  /* the file has no link left (deleted, memfd, SysV segment) */

/* One VMA: [start, end), WX_P_* flags, and for a file its inode, dev (major << 20 | minor) and dentry name. */
struct wx_part {
	__u64 start;
	__u64 end;
	__u64 ino;
	__u32 dev;
	__u32 flags;
	char name[WX_PART_NAME_LEN];
};

/* wx_region_record.region_flags: how much of the range the parts describe. */
#define WX_R_WALKED 0x1 /* the VMA tree was walked: parts are the VMAs of the range, in order */
#define WX_R_MORE 0x2   /* the range holds more VMAs than WX_MAX_PARTS: the rest are not described */
#define WX_R_HOLE 0x4   /* some of the range is not mapped */
#define WX_R_FAILED 0x8 /* the walk gave up (tree deeper than the bound, a node freed meanwhile): nothing is known */

/*
 * WX_KIND_SYSCALL with WX_F_REGION: the VMAs of the call's range at entry
 * (mprotect, pkey_mprotect: [args[0], args[0] + args[1]); mremap: the old
 * range), so the call is judged on what the range was even when the process
 * is gone before user space can read /proc. Without WX_R_WALKED (a kernel
 * whose VMA tree the programs cannot walk) only the mm's stack and brk
 * addresses are known.
 */
struct wx_region_record {
	struct wx_record rec;
	__u64 mm; /* the address space, as in repeat keys */
	__u64 start_stack;
	__u64 start_brk;
	__u64 brk;
	__u32 nparts;
	__u32 region_flags;
	struct wx_part parts[WX_MAX_PARTS];
};

/* wx_exec_record.path_flags: how much of the executable's path `path` holds. */
#define WX_X_WHOLE 0x1     /* every component up to the root of the mount tree */
#define WX_X_TRUNCATED 0x2 /* more components than fit: the path is not known */

/*
 * WX_KIND_EXEC: the task's uid and comm, the path execve was given
 * (NUL-terminated), the new stack's VMA (stack.end 0: not found) and the
 * executable file (exe: its ino, dev, name and WX_P_UNLINKED), so an
 * executable stack or a program run from a memfd is known even when the
 * process is gone before /proc can be read; mm identifies the new address
 * space in repeat keys. `path` is the executable file's path as
 * /proc/PID/exe shows it, walked up its dentries and mounts from
 * mm->exe_file: its components from the file up, each NUL-terminated,
 * `path_len` bytes in all; whole only with WX_X_WHOLE.
 */
struct wx_exec_record {
	struct wx_record rec;
	__u32 uid;
	char comm[WX_COMM_LEN];
	char filename[WX_PATH_LEN];
	__u64 mm;
	struct wx_part stack;
	struct wx_part exe;
	__u32 path_flags;
	__u32 path_len;
	char path[WX_EXE_PATH_LEN];
};

/*
 * A repeat key: a successful mprotect/pkey_mprotect whose whole range lies in
 * one private anonymous VMA (stack and heap included), and whose judgement
 * cannot depend on the region's history (the VMA was writable, or the call
 * asks for no exec). Every call with the same key is judged alike, so the
 * first is sent (WX_F_REPEAT_KEY) and the rest are counted in `repeats`.
 */
struct wx_repeat_key {
	__u64 mm;     /* the address space (a new one at every exec) */
	__u64 start;  /* the call's range */
	__u64 end;
	__u32 tgid;
	__u32 sys;    /* WX_SYS_MPROTECT or WX_SYS_PKEY_MPROTECT */
	__u32 prot;   /* the effective prot asked for (after READ_IMPLIES_EXEC) */
	__u32 flags;  /* the VMA's WX_P_* flags before the call */
	__u32 rie;    /* READ_IMPLIES_EXEC was set */
	__u32 pad;
};

/* How many calls of a key were counted instead of sent, the last one's entry time and thread. */
struct wx_repeat_count {
	__u64 count;
	__u64 last_ts;
	__u32 last_tid;
	__u32 pad;
};

/*
 * A deny rule the kernel applies at syscall entry: it fires when the call
 * belongs to `sys`, requests every bit of `prot_all` and every bit of
 * `flags_all`, and none of `flags_none`. The requested prot is the call's
 * prot after READ_IMPLIES_EXEC (mmap, mprotect, pkey_mprotect), derived from
 * shmflg for shmat (read, write unless SHM_RDONLY, exec with SHM_EXEC), read,
 * write and -- under READ_IMPLIES_EXEC -- exec for a brk that moves the break,
 * and exec for a personality call that sets READ_IMPLIES_EXEC. `flags` are
 * mmap's flags, mremap's flags, shmat's shmflg and memfd_create's flags.
 */
struct wx_kill_rule {
	__u32 sys;
	__u32 prot_all;
	__u64 flags_all;
	__u64 flags_none;
};

/* wx_config.filters: which selection sets are in force (an empty set selects all). */
#define WX_FILTER_PIDS 0x1
#define WX_FILTER_COMMS 0x2
#define WX_FILTER_CGROUPS 0x4

/*
 * The run-time switches, slot 0 of the `config` array. Nothing is reported
 * until user space has filled the maps and set `active`: the programs are
 * attached while bcc loads them, before the filters exist.
 */
struct wx_config {
	__u32 active;
	__u32 filters;
	__u32 enforce; /* send SIGKILL when a kill rule fires (else rules are inert) */
	__u32 nrules;  /* kill_rules[0..nrules) are in force */
};

/* A key of the `sel_comms` set: a task's comm, NUL-padded. */
struct wx_comm {
	char comm[WX_COMM_LEN];
};

/* Slots of the per-CPU `lost` counters. */
enum wx_lost {
	WX_LOST_RINGBUF = 0, /* the ring buffer was full: a record was dropped */
	WX_LOST_PENDING = 1, /* no per-thread entry could be made (kernel memory): a call went unreported */
	WX_LOST_SLOTS = 2,
};

#endif /* WX_RECORD_H */
