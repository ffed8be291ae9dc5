/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wx_record.h -- the one definition of what trampwatch's kernel side tells
 * user space, and of the run-time knobs user space writes back.
 *
 * Included by every tracer/bpf/*.bpf.c file and, in the layout test, by a
 * plain C program that prints offsetof/sizeof of every field, which is
 * compared with the ctypes view in tracer/sources/ebpf_source.py.
 * Only fixed-width types: the same bytes mean the same thing on both sides.
 */
#ifndef WX_RECORD_H
#define WX_RECORD_H

#include <linux/types.h>

#define WX_COMM_LEN 16
#define WX_PATH_LEN 256
#define WX_NAME_LEN 48
#define WX_MAX_KILL_RULES 16

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
};

/* wx_record.flags */
#define WX_F_KILLED 0x1     /* syscall: a kill rule matched and SIGKILL was sent at entry */
#define WX_F_ARGS_FAULT 0x2 /* syscall: i386 old_mmap's argument block was unreadable; args are raw */
#define WX_F_THREAD 0x4     /* fork: the child joined the parent's thread group */
#define WX_F_SHARES_VM 0x8  /* fork: the child shares the parent's address space */
#define WX_F_GROUP_DEAD 0x10 /* exit: the last task of its process */
#define WX_F_OBJECT 0x20    /* syscall: obj_* describe the object behind mmap's descriptor */

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

/* WX_KIND_EXEC: the task's uid and comm, and the path execve was given (NUL-terminated). */
struct wx_exec_record {
	struct wx_record rec;
	__u32 uid;
	char comm[WX_COMM_LEN];
	char filename[WX_PATH_LEN];
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
