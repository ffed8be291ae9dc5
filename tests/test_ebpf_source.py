"""Tests of the eBPF source against the real kernel: real BPF programs,
real compiled C programs, no mocks.

The C program (CASES_C) waits for one byte on stdin before doing its W^X
pattern, so the test can select its pid first. Skips only when the kernel
side cannot load at all (CapabilityMissing names what is missing).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracer import abi
from tracer.actions.kernel_enforce import kill_rules_for
from tracer.categories import Category
from tracer.errors import CapabilityMissing, NoSuchProcess, TrampwatchError
from tracer.events import (
    CallAgain,
    CallsRepeated,
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    MemCall,
    MemReturn,
    RecordsLost,
)
from tracer.pipeline import Judge, feed_ebpf
from tracer.policy.loader import load_policy_file
from tracer.sources import ebpf_btf, ebpf_loader, ebpf_procs, ebpf_records, procfs
from tracer.sources.ebpf_records import KillRule
from tracer.sources.ebpf_source import EbpfConfig, EbpfSource

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.ebpf

CASES_C = r"""/* Test program for tests/test_ebpf_source.py: one W^X pattern per mode. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static const unsigned char CODE[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3}; /* mov eax, 42; ret */

static void *must_map(int prot, int flags, int fd)
{
	void *p = mmap(NULL, 4096, prot, flags, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	return p;
}

static void run_code(void *page)
{
	memcpy(page, CODE, sizeof(CODE));
	int (*fn)(void) = (int (*)(void))page;
	printf("RAN %d\n", fn());
}

static void *renamed_thread(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "renamed-worker");
	must_map(PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	return NULL;
}

int main(int argc, char **argv)
{
	char go;
	const char *mode = argc > 1 ? argv[1] : "";
	long count = argc > 2 ? atol(argv[2]) : 0;

	/* Wait until the test has selected this pid. */
	if (read(0, &go, 1) != 1)
		return 3;
	if (!strcmp(mode, "rwx")) {
		run_code(must_map(PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1));
	} else if (!strcmp(mode, "rw_rx")) {
		void *p = must_map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		memcpy(p, CODE, sizeof(CODE));
		if (mprotect(p, 4096, PROT_READ | PROT_EXEC)) return 2;
		printf("RAN %d\n", ((int (*)(void))p)());
	} else if (!strcmp(mode, "memfd")) {
		int fd = memfd_create("twtest", 0);
		if (fd < 0 || ftruncate(fd, 4096)) return 2;
		void *w = must_map(PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		void *x = must_map(PROT_READ | PROT_EXEC, MAP_SHARED, fd);
		memcpy(w, CODE, sizeof(CODE));
		printf("RAN %d\n", ((int (*)(void))x)());
	} else if (!strcmp(mode, "flood")) {
		/* count x (RW <-> R) on one page; then one RX as the control. */
		char *p = must_map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		for (long i = 0; i < count; i++)
			mprotect(p, 4096, (i & 1) ? PROT_READ | PROT_WRITE : PROT_READ);
		mprotect(p, 4096, PROT_READ | PROT_EXEC);
	} else if (!strcmp(mode, "xflood")) {
		/* count mprotects that all ask for exec: each one crosses. */
		char *p = must_map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		for (long i = 0; i < count; i++)
			mprotect(p, 4096, (i & 1) ? PROT_READ | PROT_WRITE | PROT_EXEC : PROT_READ | PROT_EXEC);
	} else if (!strcmp(mode, "jit")) {
		/* count x (RW -> RX, RX -> RW) on one page, as a JIT flips its code. */
		char *p = must_map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		for (long i = 0; i < count; i++) {
			mprotect(p, 4096, PROT_READ | PROT_EXEC);
			mprotect(p, 4096, PROT_READ | PROT_WRITE);
		}
	} else if (!strcmp(mode, "stack")) {
		/* The stack page holding `go`, made read+write+execute. */
		char *page = (char *)((unsigned long)&go & ~4095UL);
		printf("STACK %p %d\n", page, mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
	} else if (!strcmp(mode, "history")) {
		/* After an RWX mapping, even a plain mprotect crosses. */
		must_map(PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		void *p = must_map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		mprotect(p, 4096, PROT_READ);
	} else if (!strcmp(mode, "fork")) {
		pid_t child = fork();
		if (child == 0) {
			must_map(PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1);
			_exit(0);
		}
		waitpid(child, NULL, 0);
		printf("CHILD %d\n", child);
	} else if (!strcmp(mode, "renamed_thread")) {
		/* A thread that names itself, then maps RWX memory. */
		pthread_t thread;
		if (pthread_create(&thread, NULL, renamed_thread, NULL) || pthread_join(thread, NULL)) return 2;
	} else if (!strcmp(mode, "rie")) {
		personality(READ_IMPLIES_EXEC);
		if (sbrk(65536) == (void *)-1) return 2;
	} else if (!strcmp(mode, "shm")) {
		int id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
		void *p = shmat(id, NULL, SHM_EXEC);
		shmctl(id, IPC_RMID, NULL);
		if (p == (void *)-1) return 2;
		printf("SHM %d %p\n", id, p);
#ifdef __x86_64__
	} else if (!strcmp(mode, "int80")) {
		/* A 64-bit program making an i386 mprotect through int 0x80. */
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
		long ret, nr = 125; /* i386 mprotect */
		__asm__ volatile("int $0x80" : "=a"(ret)
			: "a"(nr), "b"(p), "c"(4096), "d"(PROT_READ | PROT_EXEC) : "memory");
		printf("INT80 %p %ld\n", p, ret);
#endif
	} else {
		return 4;
	}
	fflush(stdout);
	return 0;
}
"""

# Prints, for every field and constant of wx_record.h, "name value".
LAYOUT_C = r"""
#include <stddef.h>
#include <stdio.h>
#include "wx_record.h"
#define FIELD(s, f) printf("%s.%s %zu\n", #s, #f, offsetof(struct s, f))
#define CONST(c) printf("%s %lld\n", #c, (long long)(c))
int main(void)
{
	FIELD(wx_record, ts); FIELD(wx_record, args); FIELD(wx_record, ret);
	FIELD(wx_record, kind); FIELD(wx_record, tgid); FIELD(wx_record, tid);
	FIELD(wx_record, arch); FIELD(wx_record, nr); FIELD(wx_record, flags);
	FIELD(wx_record, personality); FIELD(wx_record, kill_rule);
	FIELD(wx_object_record, rec); FIELD(wx_object_record, obj_ino); FIELD(wx_object_record, obj_dev);
	FIELD(wx_object_record, obj_nlink); FIELD(wx_object_record, obj_name);
	FIELD(wx_exec_record, rec); FIELD(wx_exec_record, uid); FIELD(wx_exec_record, comm);
	FIELD(wx_exec_record, filename); FIELD(wx_exec_record, mm); FIELD(wx_exec_record, stack);
	FIELD(wx_exec_record, exe); FIELD(wx_exec_record, path_flags); FIELD(wx_exec_record, path_len);
	FIELD(wx_exec_record, path);
	FIELD(wx_part, start); FIELD(wx_part, end); FIELD(wx_part, ino); FIELD(wx_part, dev);
	FIELD(wx_part, flags); FIELD(wx_part, name);
	FIELD(wx_region_record, rec); FIELD(wx_region_record, mm); FIELD(wx_region_record, start_stack);
	FIELD(wx_region_record, start_brk); FIELD(wx_region_record, brk); FIELD(wx_region_record, nparts);
	FIELD(wx_region_record, region_flags); FIELD(wx_region_record, parts);
	FIELD(wx_repeat_key, mm); FIELD(wx_repeat_key, start); FIELD(wx_repeat_key, end);
	FIELD(wx_repeat_key, tgid); FIELD(wx_repeat_key, sys); FIELD(wx_repeat_key, prot);
	FIELD(wx_repeat_key, flags); FIELD(wx_repeat_key, rie); FIELD(wx_repeat_key, pad);
	FIELD(wx_repeat_count, count); FIELD(wx_repeat_count, last_ts); FIELD(wx_repeat_count, last_tid);
	FIELD(wx_repeat_count, pad);
	printf("sizeof.wx_record %zu\n", sizeof(struct wx_record));
	printf("sizeof.wx_object_record %zu\n", sizeof(struct wx_object_record));
	printf("sizeof.wx_exec_record %zu\n", sizeof(struct wx_exec_record));
	printf("sizeof.wx_part %zu\n", sizeof(struct wx_part));
	printf("sizeof.wx_region_record %zu\n", sizeof(struct wx_region_record));
	printf("sizeof.wx_repeat_key %zu\n", sizeof(struct wx_repeat_key));
	printf("sizeof.wx_repeat_count %zu\n", sizeof(struct wx_repeat_count));
	CONST(WX_COMM_LEN); CONST(WX_PATH_LEN); CONST(WX_NAME_LEN); CONST(WX_MAX_KILL_RULES);
	CONST(WX_PART_NAME_LEN); CONST(WX_MAX_PARTS); CONST(WX_EXE_PATH_LEN); CONST(WX_NAME_MAX);
	CONST(WX_X_WHOLE); CONST(WX_X_TRUNCATED);
	CONST(WX_P_READ); CONST(WX_P_WRITE); CONST(WX_P_EXEC); CONST(WX_P_SHARED); CONST(WX_P_GROWSDOWN);
	CONST(WX_P_STACK); CONST(WX_P_HEAP); CONST(WX_P_FILE); CONST(WX_P_SPECIAL); CONST(WX_P_UNLINKED);
	CONST(WX_R_WALKED); CONST(WX_R_MORE); CONST(WX_R_HOLE); CONST(WX_R_FAILED);
	CONST(WX_KIND_SYSCALL); CONST(WX_KIND_EXEC); CONST(WX_KIND_FORK); CONST(WX_KIND_EXIT);
	CONST(WX_SYS_NONE); CONST(WX_SYS_MMAP); CONST(WX_SYS_MPROTECT); CONST(WX_SYS_PKEY_MPROTECT);
	CONST(WX_SYS_MREMAP); CONST(WX_SYS_MUNMAP); CONST(WX_SYS_BRK); CONST(WX_SYS_SHMAT);
	CONST(WX_SYS_SHMDT); CONST(WX_SYS_MEMFD_CREATE); CONST(WX_SYS_PERSONALITY);
	CONST(WX_SYS_PRCTL_MM);
	CONST(WX_F_KILLED); CONST(WX_F_ARGS_FAULT); CONST(WX_F_THREAD); CONST(WX_F_SHARES_VM);
	CONST(WX_F_GROUP_DEAD); CONST(WX_F_OBJECT); CONST(WX_F_REGION); CONST(WX_F_REPEAT_KEY);
	CONST(WX_FILTER_PIDS); CONST(WX_FILTER_COMMS); CONST(WX_FILTER_CGROUPS);
	CONST(WX_LOST_RINGBUF); CONST(WX_LOST_PENDING); CONST(WX_LOST_SLOTS);
	return 0;
}
"""

MAX_POLLS = 150  # 150 x 200 ms: a guard against hanging, not a timing assertion
WX = int(abi.Prot.WRITE | abi.Prot.EXEC)


def _compile(source: str, out: Path, *flags: str) -> Path | str:
    """Build `source` into `out`; return the binary, or gcc's complaint."""
    src = out.with_suffix(".c")
    src.write_text(source)
    result = subprocess.run(
        ["gcc", "-O1", "-Wall", "-Wextra", *flags, "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    return out if result.returncode == 0 else result.stderr.strip()


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The cases program, 64-bit and i386 (skipped where gcc -m32 cannot link)."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not on PATH (run scripts/setup)")
    tmp = tmp_path_factory.mktemp("ebpf")
    built = {"x86_64": _compile(CASES_C, tmp / "cases64"), "i386": _compile(CASES_C, tmp / "cases32", "-m32")}
    if isinstance(built["x86_64"], str):
        pytest.fail(f"the test program does not build: {built['x86_64']}")
    return built


def _i386(programs: dict[str, Path | str]) -> Path:
    if isinstance(programs["i386"], str):
        pytest.skip(f"gcc -m32 cannot build i386 programs (gcc-multilib missing?): {programs['i386']}")
    return programs["i386"]


def load_source(config: EbpfConfig) -> EbpfSource:
    """Attach a source. Skip when the host lacks what it needs (bcc, headers,
    tracefs, BTF, the privilege to load BPF); a program that does not compile
    or that the verifier rejects is a defect of ours, so that fails."""
    try:
        return EbpfSource(config)
    except CapabilityMissing as err:
        if err.capability == "eBPF monitor program" and "EPERM" not in err.reason:
            pytest.fail(f"the monitor program does not load: {err}")
        pytest.skip(f"the eBPF source cannot load here: {err}")


@pytest.fixture(scope="module")
def source() -> Iterator[EbpfSource]:
    """One attached source for the module; each test sets its own filters."""
    src = load_source(EbpfConfig(pids=(os.getpid(),)))
    yield src
    src.close()


@dataclass
class Run:
    pid: int
    returncode: int
    stdout: str
    events: list[Event]

    def calls(self, syscall: str | None = None, pid: int | None = None) -> list[MemReturn]:
        """The MemReturns of `pid` (default: the run's), optionally of one syscall."""
        want = self.pid if pid is None else pid
        return [
            e
            for e in self.events
            if isinstance(e, MemReturn) and e.call.pid == want and syscall in (None, e.call.syscall)
        ]


def _drain_until_exit(src: EbpfSource, pid: int) -> list[Event]:
    """Poll until the process exit record of `pid` arrives; return all events."""
    events: list[Event] = []
    for _ in range(MAX_POLLS):
        events += src.poll(200)
        if any(isinstance(e, ExitEvent) and e.pid == pid and e.status is not None for e in events):
            return events
    pytest.fail(f"no exit record for pid {pid} after {MAX_POLLS} polls (lost={src.lost()})")


def _start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate("g")
    return out


def run_selected(src: EbpfSource, argv: list[str], **filters: tuple) -> Run:
    """Start argv, select it (by pid unless filters are given), let it run,
    and collect events until it has exited."""
    proc = _start(argv)
    src.set_filters(**(filters or {"pids": (proc.pid,), "comms": (), "cgroups": ()}))
    out = _finish(proc)
    return Run(proc.pid, proc.returncode, out, _drain_until_exit(src, proc.pid))


def run_unselected(argv: list[str]) -> int:
    """Run argv to its end (selection is the caller's business); return its pid."""
    proc = _start(argv)
    _finish(proc)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}"
    return proc.pid


# --- the record layout ------------------------------------------------------------


def test_python_record_view_matches_the_c_layout(tmp_path: Path) -> None:
    binary = _compile(LAYOUT_C, tmp_path / "layout", f"-I{ebpf_loader.BPF_DIR}")
    assert isinstance(binary, Path), binary
    c_view = dict(
        line.split()
        for line in subprocess.run(
            [str(binary)], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    c_view = {name: int(value) for name, value in c_view.items()}

    py_view = {
        f"wx_record.{name}": getattr(ebpf_records.Record, name).offset
        for name, _ in ebpf_records.Record._fields_
    }
    views = (
        ("wx_object_record", ebpf_records.ObjectRecord),
        ("wx_exec_record", ebpf_records.ExecRecord),
        ("wx_part", ebpf_records.Part),
        ("wx_region_record", ebpf_records.RegionRecord),
        ("wx_repeat_key", ebpf_records.RepeatKey),
        ("wx_repeat_count", ebpf_records.RepeatCount),
    )
    for c_name, view in views:
        py_view |= {f"{c_name}.{name}": getattr(view, name).offset for name, _ in view._fields_}
        py_view[f"sizeof.{c_name}"] = ctypes.sizeof(view)
    py_view["sizeof.wx_record"] = ctypes.sizeof(ebpf_records.Record)
    # The struct formats used to decode in bulk agree with the ctypes views.
    assert ebpf_records.RECORD_FORMAT.size == ctypes.sizeof(ebpf_records.Record)
    parts_at = ebpf_records.RECORD_FORMAT.size + ebpf_records.REGION_FORMAT.size
    assert parts_at == ebpf_records.RegionRecord.parts.offset
    assert ebpf_records.PART_FORMAT.size == ctypes.sizeof(ebpf_records.Part)
    py_view |= {
        "WX_COMM_LEN": ebpf_records.COMM_LEN,
        "WX_PATH_LEN": ebpf_records.PATH_LEN,
        "WX_NAME_LEN": ebpf_records.NAME_LEN,
        "WX_MAX_KILL_RULES": ebpf_records.MAX_KILL_RULES,
        "WX_LOST_SLOTS": len(ebpf_records.LostSlot),
        "WX_PART_NAME_LEN": ebpf_records.PART_NAME_LEN,
        "WX_MAX_PARTS": ebpf_records.MAX_PARTS,
        "WX_EXE_PATH_LEN": ebpf_records.EXE_PATH_LEN,
        "WX_NAME_MAX": ebpf_records.NAME_MAX,
    }
    for prefix, enum_type in (
        ("WX_KIND_", ebpf_records.Kind),
        ("WX_SYS_", ebpf_records.Sys),
        ("WX_F_", ebpf_records.RecordFlag),
        ("WX_FILTER_", ebpf_records.Filter),
        ("WX_LOST_", ebpf_records.LostSlot),
        ("WX_P_", ebpf_records.PartFlag),
        ("WX_R_", ebpf_records.RegionFlag),
        ("WX_X_", ebpf_records.ExePathFlag),
    ):
        py_view |= {prefix + member.name: int(member.value) for member in enum_type}
    assert py_view == c_view


# --- what crosses to user space ---------------------------------------------------------


def test_anonymous_rwx_mmap_arrives_with_args_and_result(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "rwx"])
    assert run.returncode == 0 and "RAN 42" in run.stdout
    rwx = [r for r in run.calls("mmap") if r.call.args[2] & 7 == 7]
    assert len(rwx) == 1
    call = rwx[0].call
    assert call.arch == "x86_64" and call.tid == run.pid
    assert call.args[1] == 4096 and call.args[3] & abi.MAP_ANONYMOUS and call.fd_object is None
    assert not rwx[0].failed and rwx[0].result > 0
    # Each call arrives whole, as one MemReturn: nothing pairs an entry with its return again.
    assert not [e for e in run.events if isinstance(e, MemCall)]


def test_rw_then_rx_mprotect_arrives(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "rw_rx"])
    assert "RAN 42" in run.stdout
    protects = run.calls("mprotect")
    assert [(r.call.args[1], r.call.args[2], r.result) for r in protects] == [(4096, 5, 0)]
    # The RW mmap before it arrives too: it starts the write history that
    # makes the later exec gain a w-to-x.
    assert [r.call.args[2] for r in run.calls("mmap") if r.result == protects[0].call.args[0]] == [3]


def test_memfd_dual_map_shows_both_views_of_one_object(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "memfd"])
    assert "RAN 42" in run.stdout
    assert len(run.calls("memfd_create")) == 1
    views = [r for r in run.calls("mmap") if r.call.fd_object and "twtest" in r.call.fd_object.path]
    assert sorted(r.call.args[2] for r in views) == [3, 5]
    writable, executable = sorted(views, key=lambda r: r.call.args[2])
    assert writable.call.fd_object.path == "/memfd:twtest (deleted)"
    assert (writable.call.fd_object.dev, writable.call.fd_object.inode) == (
        executable.call.fd_object.dev,
        executable.call.fd_object.inode,
    )


def _libc_mappings(events: list[Event], pid: int) -> list:
    return [
        e.call.fd_object
        for e in events
        if isinstance(e, MemReturn)
        and e.call.pid == pid
        and e.call.fd_object
        and os.path.basename(e.call.fd_object.path).startswith("libc.so")
    ]


def test_file_mappings_of_the_loader_carry_the_object_after_close(source, programs) -> None:
    # Selected through this test process, the child is followed from its fork:
    # the loader's mappings happen before main() and must not be missed.
    source.set_filters(pids=(os.getpid(),), comms=(), cgroups=())
    proc = _start([str(programs["x86_64"]), "rwx"])
    events: list[Event] = []
    # The child now waits on stdin, libc mapped and its descriptor long closed.
    for _ in range(MAX_POLLS):
        events += source.poll(200)
        if _libc_mappings(events, proc.pid):
            break
    _finish(proc)
    events += _drain_until_exit(source, proc.pid)
    libc = _libc_mappings(events, proc.pid)
    assert libc, "the loader's read+exec mapping of libc crosses, with its object"
    ours = {(m.dev, m.inode): m.path for m in procfs.read_maps(os.getpid())}
    # The path comes from the live process's maps; dev/inode from the kernel at the call.
    assert ours.get((libc[0].dev, libc[0].inode)) == libc[0].path


def test_exec_history_lets_plain_mprotect_through(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "history"])
    assert [r.call.args[2] for r in run.calls("mprotect")] == [int(abi.Prot.READ)]


def test_fork_is_followed_and_the_child_is_selected(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "fork"])
    child = int(re.search(r"CHILD (\d+)", run.stdout)[1])
    forks = [e for e in run.events if isinstance(e, ForkEvent) and e.parent_pid == run.pid]
    assert any(f.child_pid == child and not f.thread and not f.shares_vm for f in forks)
    assert [r.call.args[2] for r in run.calls("mmap", pid=child) if r.call.args[2] == 7] == [7]


def test_read_implies_exec_makes_brk_and_personality_cross(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "rie"])
    persona = run.calls("personality")
    assert [r.call.args[0] for r in persona] == [abi.READ_IMPLIES_EXEC]
    grows = [r for r in run.calls("brk") if r.call.args[0]]
    assert grows, "brk under READ_IMPLIES_EXEC makes heap memory executable"


def test_each_call_carries_its_threads_persona(source, build_program) -> None:
    """READ_IMPLIES_EXEC set by one thread before the process was selected:
    each call carries the persona of the thread that made it (the kernel's
    task->personality), and the judge takes it, so only that thread's
    read+write mmap is W+X."""
    proc = _start([str(build_program("thread_persona")), "attach-second"])
    while not proc.stdout.readline().startswith("READY"):
        assert proc.poll() is None, "the program ended before it was ready"
    source.set_filters(pids=(proc.pid,), comms=(), cgroups=())
    _finish(proc)
    run = Run(proc.pid, proc.returncode, "", _drain_until_exit(source, proc.pid))
    mmaps = [r for r in run.calls("mmap") if r.call.args[1] == 4096 and r.call.args[2] == 3]
    by_thread = {r.call.tid == proc.pid: r.call.personality for r in mmaps}
    assert by_thread == {True: 0, False: abi.READ_IMPLIES_EXEC}
    out = KeptJudgements()
    judge = Judge(load_policy_file(ROOT / "policies" / "default.yaml"), "audit", [out], source="ebpf")
    feed_ebpf(judge, run.events)
    judged = [j for j in out.judgements if j.syscall == "mmap" and j.tid != proc.pid]
    assert judged and all(Category.READ_IMPLIES_EXEC in j.categories for j in judged)
    assert not [j for j in out.judgements if j.syscall == "mmap" and j.tid == proc.pid]


class KeptJudgements:
    """An output that keeps every judgement (the judge's tests here and in
    test_monitor_repeats.py and test_monitor_replay.py)."""

    def __init__(self) -> None:
        self.judgements: list = []

    def emit(self, judgement) -> None:
        self.judgements.append(judgement)

    def lost(self, event) -> None:
        pass

    def close(self, stats) -> None:
        pass


def test_shmat_with_shm_exec(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "shm"])
    attached = run.calls("shmat")
    assert len(attached) == 1 and attached[0].call.args[2] & abi.SHM_EXEC
    assert f"{attached[0].result:#x}" in run.stdout


def test_comm_filter_sees_the_exec_and_seeds_the_process(source, programs, tmp_path) -> None:
    named = tmp_path / "twcomm"
    shutil.copy(programs["x86_64"], named)
    source.set_filters(pids=(), comms=("twcomm",), cgroups=())
    try:
        proc = _start([str(named), "rwx"])
        events: list[Event] = []
        # The program waits on stdin, so it is alive while /proc is read for the exec.
        for _ in range(MAX_POLLS):
            events += source.poll(200)
            if any(isinstance(e, ExecEvent) and e.pid == proc.pid for e in events):
                break
        other = run_unselected([str(programs["x86_64"]), "rwx"])
        _finish(proc)
        events += _drain_until_exit(source, proc.pid)
    finally:
        source.set_filters(pids=(os.getpid(),), comms=())
    (exec_event,) = [e for e in events if isinstance(e, ExecEvent) and e.pid == proc.pid]
    assert exec_event.process.exe == str(named) and exec_event.process.comm == "twcomm"
    assert any(m.path == str(named) for m in exec_event.maps)
    assert exec_event.elf_execstack is False and exec_event.former_pid is None
    assert [e for e in events if isinstance(e, MemReturn) and e.call.pid == proc.pid and e.call.args[2] == 7]
    assert not [e for e in events if getattr(e, "pid", None) == other]


def test_an_exec_is_named_as_proc_names_it_with_or_without_the_walk(source, programs, tmp_path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(programs["x86_64"], real / "twrelexe")
    (tmp_path / "link").symlink_to(real)
    blind = load_source(EbpfConfig(pids=(os.getpid(),), walk_exe_path=False))
    try:
        assert blind.exe_path_note == "turned off"
        named = {}
        for src in (source, blind):
            src.set_filters(pids=(), comms=("twrelexe",), cgroups=())
            # Relative, through a symlinked directory; alive (waiting on stdin) when decoded.
            proc = subprocess.Popen(["../link/twrelexe", "rwx"], cwd=real, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            events = _drain_until_exit_after(src, proc)
            src.set_filters(pids=(os.getpid(),), comms=())
            (exec_event,) = [e for e in events if isinstance(e, ExecEvent) and e.pid == proc.pid]
            named[src is blind] = exec_event.process.exe
    finally:
        blind.close()
    assert named == {False: str(real / "twrelexe"), True: str(real / "twrelexe")}


def _drain_until_exit_after(src: EbpfSource, proc: subprocess.Popen[str]) -> list[Event]:
    """Poll until `proc`'s exec record was decoded, let it finish, and drain until its exit."""
    events: list[Event] = []
    for _ in range(MAX_POLLS):
        events += src.poll(200)
        if any(isinstance(e, ExecEvent) and e.pid == proc.pid for e in events):
            break
    _finish(proc)
    return events + _drain_until_exit(src, proc.pid)


def test_comm_filter_selects_the_process_not_the_thread_name(source, programs, tmp_path) -> None:
    named = tmp_path / "twcomm"
    shutil.copy(programs["x86_64"], named)
    run = run_selected(source, [str(named), "renamed_thread"], pids=(), comms=("twcomm",), cgroups=())
    source.set_filters(pids=(os.getpid(),), comms=())
    assert run.returncode == 0
    rwx = [r for r in run.calls("mmap") if r.call.args[2] == 7]
    # The call came from the thread named renamed-worker, not from the main thread.
    assert len(rwx) == 1 and rwx[0].call.tid != run.pid


# --- what the kernel knew of the range -----------------------------------------------


@pytest.fixture()
def reselect(source: EbpfSource) -> Iterator[EbpfSource]:
    """The module's source, selecting this test process again afterwards
    (so the next test's programs are followed from their fork)."""
    yield source
    source.set_filters(pids=(os.getpid(),), comms=(), cgroups=())


def test_a_protection_change_carries_the_kernels_view_of_its_range(reselect, programs) -> None:
    run = run_selected(reselect, [str(programs["x86_64"]), "stack"])
    page = int(re.search(r"STACK (0x[0-9a-f]+) 0", run.stdout)[1], 16)
    (call,) = [r.call for r in run.calls("mprotect") if r.call.args[0] == page]
    # The stack VMA as it was before the call: read+write, named as /proc names it.
    (vma,) = call.vmas
    assert vma.start <= page < page + 4096 <= vma.end
    assert (vma.path, vma.prot, vma.shared) == ("[stack]", int(abi.Prot.READ | abi.Prot.WRITE), False)


def test_without_the_vma_walk_the_range_is_unknown(programs) -> None:
    with load_source(EbpfConfig(pids=(os.getpid(),), walk_vmas=False)) as blind:
        assert not blind.walks_vmas and "turned off" in blind.vma_note
        run = run_selected(blind, [str(programs["x86_64"]), "stack"])
    page = int(re.search(r"STACK (0x[0-9a-f]+) 0", run.stdout)[1], 16)
    (call,) = [r.call for r in run.calls("mprotect") if r.call.args[0] == page]
    assert call.vmas is None and call.repeat_key is None


# --- repeated calls, counted in the kernel ---------------------------------------------


def test_jit_flips_cross_once_per_transition_and_the_rest_are_counted(reselect, programs) -> None:
    source = reselect
    flips = 100_000
    lost_before = source.lost()
    run = run_selected(source, [str(programs["x86_64"]), "jit", str(flips)])
    assert run.returncode == 0
    protects = run.calls("mprotect")
    # The first RW -> RX and the first RX -> RW cross, each starting a repeat key.
    assert [(r.call.args[2], r.result) for r in protects] == [(5, 0), (3, 0)]
    keys = {r.call.repeat_key: r.call.args[2] for r in protects}
    assert None not in keys
    repeats = [e for e in run.events if isinstance(e, CallsRepeated) and e.pid == run.pid]
    counted = {key: sum(e.count for e in repeats if e.key == key) for key in keys}
    # Every call is delivered or counted: none is lost, none counted twice.
    assert counted == {key: flips - 1 for key in keys}
    assert source.lost() == lost_before
    # Counts come before the process's exit.
    exit_index = next(i for i, e in enumerate(run.events) if isinstance(e, ExitEvent) and e.pid == run.pid
                      and e.status is not None)
    assert all(run.events.index(e) < exit_index for e in repeats)


def test_kernel_repeats_can_be_turned_off(programs) -> None:
    with load_source(EbpfConfig(pids=(os.getpid(),), repeats=False)) as every:
        run = run_selected(every, [str(programs["x86_64"]), "jit", "1000"])
    calls = run.calls("mprotect")
    again = [e for e in run.events if isinstance(e, CallAgain) and e.first.call.pid == run.pid]
    # Every call is sent: the first of each transition decoded, the same record again as CallAgain.
    assert len(calls) + len(again) == 2000
    assert [r.call.args[2] for r in calls] == [5, 3]
    assert all(any(e.first is r for r in calls) for e in again)
    assert [e.ts for e in again] == sorted(e.ts for e in again)
    assert not [e for e in run.events if isinstance(e, CallsRepeated)]


# --- i386 ---------------------------------------------------------------------------


def test_i386_program_calls_arrive_as_i386(source, programs) -> None:
    run = run_selected(source, [str(_i386(programs)), "rw_rx"])
    assert "RAN 42" in run.stdout
    protects = run.calls("mprotect")
    assert [(r.call.arch, r.call.args[2], r.result) for r in protects if r.call.args[2] == 5] == [
        ("i386", 5, 0)
    ]
    loader = [r for r in run.calls("mmap2") if r.call.fd_object]
    assert loader and all(r.call.arch == "i386" and 0 < r.result < 2**32 for r in loader)


def test_i386_shmat_is_normalised(source, programs) -> None:
    run = run_selected(source, [str(_i386(programs)), "shm"])
    attached = run.calls("shmat")
    assert len(attached) == 1 and attached[0].call.arch == "i386"
    assert attached[0].call.args[2] & abi.SHM_EXEC
    assert f"{attached[0].result:#x}" in run.stdout


def test_int80_from_a_64_bit_program_is_seen(source, programs) -> None:
    run = run_selected(source, [str(programs["x86_64"]), "int80"])
    address = int(re.search(r"INT80 (0x[0-9a-f]+) 0", run.stdout)[1], 16)
    i386 = [r for r in run.calls("mprotect") if r.call.arch == "i386"]
    assert [(r.call.args[0], r.call.args[2], r.result) for r in i386] == [(address, 5, 0)]


# --- filters ---------------------------------------------------------------------------


def test_pid_filter_keeps_other_processes_out(source, programs) -> None:
    proc = _start([str(programs["x86_64"]), "rwx"])
    source.set_filters(pids=(proc.pid,), comms=(), cgroups=())
    other = run_unselected([str(programs["x86_64"]), "rwx"])
    _finish(proc)
    events = _drain_until_exit(source, proc.pid)
    assert [e for e in events if isinstance(e, MemReturn) and e.call.pid == proc.pid]
    assert not [e for e in events if getattr(e, "pid", None) == other]


@pytest.mark.slow
def test_unselected_flood_produces_no_records(source, programs) -> None:
    flood_count = 1_000_000
    proc = _start([str(programs["x86_64"]), "rwx"])
    source.set_filters(pids=(proc.pid,), comms=(), cgroups=())
    lost_before = source.lost()
    flooder = run_unselected([str(programs["x86_64"]), "flood", str(flood_count)])
    _finish(proc)
    events = _drain_until_exit(source, proc.pid)
    from_flooder = [e for e in events if getattr(e, "pid", None) == flooder]
    assert from_flooder == []
    assert source.lost() == lost_before
    assert [e for e in events if isinstance(e, MemReturn) and e.call.pid == proc.pid]


@pytest.mark.slow
def test_selected_flood_without_exec_history_produces_no_records(source, programs) -> None:
    flood_count = 1_000_000
    lost_before = source.lost()
    run = run_selected(source, [str(programs["x86_64"]), "flood", str(flood_count)])
    assert run.returncode == 0
    # Only the closing RX mprotect -- the control that proves selection -- crosses.
    assert [r.call.args[2] for r in run.calls("mprotect")] == [5]
    assert source.lost() == lost_before


def test_cgroup_filter(source, programs) -> None:
    root = ebpf_procs.cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup2 file system is mounted")
    group = root / f"trampwatch-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as err:
        pytest.skip(f"cannot create a cgroup under {root}: {err}")
    try:
        inside = _start(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" rwx', str(programs["x86_64"])]
        )
        source.set_filters(pids=(), comms=(), cgroups=(str(group),))
        outside = run_unselected([str(programs["x86_64"]), "rwx"])
        _finish(inside)
        events = _drain_until_exit(source, inside.pid)
    finally:
        source.set_filters(pids=(os.getpid(),), cgroups=())
        group.rmdir()
    assert [e for e in events
            if isinstance(e, MemReturn) and e.call.pid == inside.pid and e.call.args[2] == 7]
    assert not [e for e in events if getattr(e, "pid", None) == outside]


def test_bad_filters_are_clear_errors(source) -> None:
    with pytest.raises(NoSuchProcess):
        source.set_filters(pids=(2**22 + 12345,))
    with pytest.raises(TrampwatchError, match="--cgroup"):
        source.set_filters(cgroups=("no-such-cgroup-here",))
    source.set_filters(pids=(os.getpid(),), cgroups=())


# --- enforcement --------------------------------------------------------------------------


@pytest.fixture()
def killing(source: EbpfSource) -> Iterator[EbpfSource]:
    source.set_kill_rules((KillRule("no-wx-map", "mmap", WX),), enforce=True)
    yield source
    source.set_kill_rules((), enforce=True)


def test_kill_rule_kills_before_the_code_runs(killing, programs) -> None:
    run = run_selected(killing, [str(programs["x86_64"]), "rwx"])
    assert run.returncode == -signal.SIGKILL
    assert "RAN" not in run.stdout
    kills = [e for e in run.events if isinstance(e, MemReturn) and e.kernel_kill and e.call.pid == run.pid]
    assert [(r.kernel_kill.rule, r.kernel_kill.pid, r.call.syscall, r.call.args[2]) for r in kills] == [
        ("no-wx-map", run.pid, "mmap", 7)]
    assert any(
        isinstance(e, ExitEvent) and e.pid == run.pid and e.status == signal.SIGKILL for e in run.events
    )


def test_kill_rule_spares_calls_it_does_not_match(killing, programs) -> None:
    run = run_selected(killing, [str(programs["x86_64"]), "rw_rx"])
    assert run.returncode == 0 and "RAN 42" in run.stdout
    assert not [e for e in run.events if isinstance(e, MemReturn) and e.kernel_kill]


def test_kill_rules_are_inert_when_not_enforcing(source, programs) -> None:
    source.set_kill_rules((KillRule("no-wx-map", "mmap", WX),), enforce=False)
    try:
        run = run_selected(source, [str(programs["x86_64"]), "rwx"])
    finally:
        source.set_kill_rules((), enforce=True)
    assert run.returncode == 0 and "RAN 42" in run.stdout


# --- drops ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_ring_buffer_counts_what_it_drops(programs) -> None:
    calls = 20_000
    # Every call sent (the RWX -> RX half would otherwise be counted in the kernel).
    with load_source(EbpfConfig(pids=(os.getpid(),), buffer_pages=1, repeats=False)) as small:
        assert small.lost() == 0 and small.lost_counts() == {"ringbuf": 0, "pending": 0}
        proc = _start([str(programs["x86_64"]), "xflood", str(calls)])
        small.set_filters(pids=(proc.pid,))
        # Nobody reads while it runs: a one-page buffer must overflow (and may
        # drop the exit record too). Once it is reaped, every record it made
        # is in the buffer or counted lost: read until the buffer is empty.
        _finish(proc)
        events: list[Event] = []
        while batch := small.poll(0):
            events += batch
        run = Run(proc.pid, proc.returncode, "", events)
        again = [e for e in events if isinstance(e, CallAgain) and e.first.call.pid == run.pid]
        received = len(run.calls("mprotect")) + len(again)
        assert small.lost_counts()["ringbuf"] > 0
        assert received < calls <= received + small.lost()
        # Each poll that found new drops said so, with the running total.
        reports = [e for e in events if isinstance(e, RecordsLost)]
        assert reports and reports[-1].total == small.lost() == sum(r.count for r in reports)
        assert dict(reports[-1].by_reason) == small.lost_counts()


# --- pure parts ------------------------------------------------------------------------------


def test_config_and_rule_validation() -> None:
    with pytest.raises(TrampwatchError, match="power of two"):
        EbpfConfig(buffer_pages=48)
    with pytest.raises(TrampwatchError, match="cannot stop syscall 'execve'"):
        KillRule("r", "execve")
    with pytest.raises(TrampwatchError, match="at most"):
        EbpfConfig(kill_rules=tuple(KillRule(f"r{i}", "mmap") for i in range(17)))


def test_kill_coverage_table() -> None:
    exact = {c for c in Category if (found := kill_rules_for(c, "r")) and found[1].exact}
    assert exact == {Category.WX_PROTECT, Category.SHM_EXEC}
    wx_map, _ = kill_rules_for(Category.WX_MAP, "deny-wx")
    assert {(r.rule, r.syscall, r.prot_all) for r in wx_map} == {
        ("deny-wx", "mmap", WX),
        ("deny-wx", "shmat", WX),
    }
    (anon,), _ = kill_rules_for(Category.ANON_EXEC, "r")
    assert (anon.syscall, anon.prot_all, anon.flags_all) == ("mmap", abi.PROT_EXEC, abi.MAP_ANONYMOUS)
    assert kill_rules_for(Category.DUAL_MAP, "r") is None


def test_kernel_offsets_come_from_btf(tmp_path: Path) -> None:
    offsets = ebpf_btf.kernel_offsets()
    assert set(offsets) == set(ebpf_btf.KERNEL_OFFSETS)
    assert offsets["WX_OFF_TASK_TGID"] == offsets["WX_OFF_TASK_PID"] + 4  # pid_t pid; pid_t tgid;
    with pytest.raises(CapabilityMissing, match="kernel BTF"):
        ebpf_btf.kernel_offsets(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"\0" * 64)
    with pytest.raises(CapabilityMissing, match="kernel BTF"):
        ebpf_btf.kernel_offsets(tmp_path / "junk")
