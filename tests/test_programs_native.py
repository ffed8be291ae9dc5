"""What the real kernel does with each test program: natively, and under MDWE.

The tracer's tests compare trampwatch against these facts, so they are pinned
here first, on the real kernel, with no tracer involved. Under
``mdwe_exec`` (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) each program's
refused calls are exactly the ones a policy preset with MDWE semantics must
refuse. The findings are summarised in tests/programs/README.md.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ProgramBuilder, ProgramOutput, drop_gnu_stack, parse_program_output
from elftools.elf.elffile import ELFFile

from tracer.abi import PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, READ_IMPLIES_EXEC

# A guard against a hung program, not a timing assertion.
HANG_GUARD_SECONDS = 120

PF_X = 0x1
DF_BIND_NOW = 0x8


@dataclass(frozen=True)
class Truth:
    """What one program run does on this kernel.

    ran: RAN labels when run natively (every STEP succeeds natively).
    refused: STEP labels that fail with EACCES under MDWE; every other STEP
        succeeds.
    mdwe_ran: RAN labels under MDWE.
    dones: DONE lines expected (a child that execs another program adds one).
    mdwe_killed_by: the signal that kills the program under MDWE before it
        prints anything, if it never gets to run.
    errors: (label, errno name) of STEPs that fail natively too.
    """

    ran: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    mdwe_ran: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    dones: int = 1
    mdwe_killed_by: signal.Signals | None = None
    errors: tuple[tuple[str, str], ...] = ()


TRUTH: dict[str, Truth] = {
    # Benign controls: nothing is refused, nothing generated runs.
    "benign_rw": Truth(),
    "benign_dlopen": Truth(),
    "benign_relro": Truth(),
    "benign_threads": Truth(),
    "short_threads": Truth(),
    # MDWE refuses a new W+X mapping, and any mprotect that gains X.
    "wx_map": Truth(ran=("wx_call",), refused=("wx_mmap",)),
    "wx_protect": Truth(ran=("wx_call",), refused=("rwx_mprotect",)),
    "w_to_x": Truth(ran=("jit_call",), refused=("rx_mprotect",)),
    "anon_exec": Truth(refused=("r_to_rx_mprotect",)),
    "execstack_mprotect": Truth(ran=("stack_call",), refused=("stack_mprotect",)),
    # glibc cannot make the stack executable for the library: dlopen fails.
    "dlopen_execstack": Truth(refused=("execstack_dlopen",)),
    "execheap": Truth(ran=("heap_call",), refused=("heap_mprotect",)),
    "execmod": Truth(ran=("file_call",), refused=("file_rx_mprotect",)),
    "shm_exec": Truth(
        ran=("shm_rwx_call", "shm_rx_call"), refused=("shm_rwx_attach",), mdwe_ran=("shm_rx_call",)
    ),
    "pkey_wx": Truth(ran=("pkey_call",), refused=("rx_pkey_mprotect",)),
    "mremap_written": Truth(ran=("moved_call",), refused=("moved_rx_mprotect",)),
    "rx_to_rwx": Truth(ran=("rwx_call",), refused=("rwx_mprotect",)),
    "int80_mprotect": Truth(ran=("low_call",), refused=("i386_mprotect",)),
    "thread_second": Truth(ran=("wx_call",), refused=("wx_mmap",)),
    "fork_tree": Truth(ran=("wx_call",), refused=("wx_mmap",), dones=2),
    # READ_IMPLIES_EXEC: MDWE refuses the mmap it turns W+X, but not the
    # brk heap growth it turns W+X -- that code runs under MDWE.
    "read_implies_exec": Truth(
        ran=("ri_call", "ri_heap_call"), refused=("ri_mmap",), mdwe_ran=("ri_heap_call",)
    ),
    # MDWE lets these through.
    "execstack": Truth(ran=("stack_call",), mdwe_ran=("stack_call",)),
    "dual_map_memfd": Truth(ran=("dual_call",), mdwe_ran=("dual_call",)),
    "dual_map_tmpfile": Truth(
        ran=("tmpfile_call", "unlinked_call"), mdwe_ran=("tmpfile_call", "unlinked_call")
    ),
    "exec_unlinked": Truth(ran=("memfd_call",), mdwe_ran=("memfd_call",)),
    "shared_anon_alias": Truth(ran=("alias_call",), mdwe_ran=("alias_call",)),
    "foreign_write_procmem": Truth(ran=("patched_call",), mdwe_ran=("patched_call",)),
    "poketext_child": Truth(ran=("child_patched_call",), mdwe_ran=("child_patched_call",)),
    # An i386 ELF without PT_GNU_STACK gets READ_IMPLIES_EXEC at exec; under
    # MDWE its execve fails (EACCES) past the point of no return and the
    # kernel kills it with SIGSEGV before it prints anything.
    "i386_noheader": Truth(ran=("heap_call",), mdwe_killed_by=signal.SIGSEGV),
    # An inherited READ_IMPLIES_EXEC survives the exec of an i386 image (the
    # re-executed child's read+write mmap is executable).
    # The re-exec itself then dies like i386_noheader: MDWE refuses the image.
    "rie_reexec": Truth(ran=("child_call",), mdwe_killed_by=signal.SIGSEGV),
    "shared_fork_alias": Truth(ran=("parent_call",), mdwe_ran=("parent_call",)),
    "procmem_child": Truth(ran=("child_patched_call",), mdwe_ran=("child_patched_call",)),
    "own_seccomp": Truth(ran=("wx_call",), refused=("wx_mmap",)),
    # The parent is not the child's tracer: the kernel refuses the POKE (ESRCH).
    "poke_attempt": Truth(errors=(("child_poketext", "ESRCH"),)),
    "wait_then_wx": Truth(ran=("wx_call",), refused=("wx_mmap",)),
    "zombie_leader": Truth(),
    # MDWE refuses any exec gain: the clean page as much as the written copy.
    "attach_copied": Truth(ran=("copy_call",), refused=("clean_rx", "copy_rx")),
    # MDWE lets a file be mapped read+execute at once (no gain): fresh_call runs.
    "attach_file_written": Truth(args=("/tmp/tw_attach_file_written.code",),
                                 ran=("written_call", "fresh_call"), refused=("clean_rx", "written_rx"),
                                 mdwe_ran=("fresh_call",)),
    # Load and process-handling programs.
    "mprotect_flood": Truth(args=("200",)),
    "jit_flood": Truth(args=("200",), refused=("jit_mprotect",)),
    "flip_mix": Truth(args=("200",), refused=("flip_mprotect",)),
    "flip_disturb": Truth(args=("50",), refused=("disturb_mprotect",)),
    "threads_flood": Truth(args=("4", "50")),
    "cheap_syscalls": Truth(args=("1000",)),
    "signals": Truth(),
    # issue 10: attacks on the tracer's model (tests/test_enforce_memory.py).
    "unseen_pages": Truth(ran=("stack_grown_call", "growsdown_grown_call"),
                          refused=("stack_grown_mprotect", "growsdown_grown_mprotect")),
    "shm_reattach": Truth(ran=("shm_reattached_call",), refused=("shm_ro_rx_mprotect",)),
    "bss_code": Truth(ran=("bss_call",), refused=("bss_rx_mprotect",)),
    "int80_clone": Truth(ran=("int80_thread_call", "main_call"),
                         refused=("thread_rx_mprotect", "main_rx_mprotect")),
    "m32_threads": Truth(ran=("thread_call", "main_call"),
                         refused=("thread_rx_mprotect", "main_rx_mprotect")),
    # Mapping a memfd read+execute directly is no exec gain: MDWE lets it run.
    "fd_swap": Truth(ran=("swap_call",), mdwe_ran=("swap_call",), args=("2000",)),
    "mem_race": Truth(ran=("race_call",), args=("mremap", "300")),
    "exit_race": Truth(args=("20",)),
    # Built plainly it has no RWX segment; the wx_segment_* builds (conftest) do.
    "wx_segment": Truth(),
}


def run(
    binary: Path, *args: str, wrapper: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], ProgramOutput | None]:
    """Run binary (under wrapper if given); return the process and its parsed stdout (None if empty)."""
    cmd = [*([str(wrapper)] if wrapper else []), str(binary), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, check=False)
    return proc, parse_program_output(proc.stdout) if proc.stdout else None


@pytest.fixture(scope="module")
def mdwe(build_program: ProgramBuilder) -> Path:
    """The built mdwe_exec wrapper."""
    return build_program("mdwe_exec")


def test_every_program_has_a_truth() -> None:
    """A new program in tests/programs must get its kernel truth pinned here."""
    sources = {p.stem for p in (Path(__file__).parent / "programs").glob("*.c")}
    # Run with their own tests below: arguments, exit codes and signals; the
    # descriptor and opaque routes (and their untraced helper) pin their native
    # truth in tests/test_enforce_fds.py (they need a socket, a code file).
    own_tests = {"mdwe_exec", "exit_code", "kill_self", "execstack_lib",  # and a library, not a program
                 "procmem_routes", "procmem_recv", "mem_fd_server", "exec_written", "opaque_routes"}
    # The receive semantics program compares its native output with the traced
    # one in tests/test_recv_holds.py.
    own_tests.add("recv_semantics")
    # The per-thread persona program takes which thread sets it as an argument;
    # tests/test_enforce_memory.py checks each native run first.
    own_tests.add("thread_persona")
    # attack_fuse_exec's interpreter and victim program, built and run by it
    # (tests/test_attack_redteam7.py checks its native run first).
    own_tests |= {"interp0_payload", "interp0_victim"}
    # The attacks on enforce mode check their native run first in test_attack.py.
    own_tests |= {name for name in sources if name.startswith("attack_")}
    assert sources - own_tests == set(TRUTH)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_native(name: str, build_program: ProgramBuilder) -> None:
    truth = TRUTH[name]
    proc, out = run(build_program(name), *truth.args)
    assert proc.returncode == 0, proc.stderr
    assert out is not None
    assert out.failed() == dict(truth.errors)
    assert set(out.ran) == set(truth.ran)
    assert out.done == truth.dones


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_under_mdwe(name: str, build_program: ProgramBuilder, mdwe: Path) -> None:
    truth = TRUTH[name]
    proc, out = run(build_program(name), *truth.args, wrapper=mdwe)
    if truth.mdwe_killed_by is not None:
        assert proc.returncode == -truth.mdwe_killed_by
        assert out is None or (set(out.ran) == set(truth.mdwe_ran) and out.failed() == {})
        return
    assert proc.returncode == 0, proc.stderr
    assert out is not None
    assert out.failed() == dict(truth.errors) | dict.fromkeys(truth.refused, "EACCES")
    assert set(out.ran) == set(truth.mdwe_ran)
    assert out.done == truth.dones


# --- what the kernel does beyond pass/fail ----------------------------------


def test_read_implies_exec_makes_rw_memory_executable(build_program: ProgramBuilder, mdwe: Path) -> None:
    _, native = run(build_program("read_implies_exec"))
    assert native is not None
    assert native.maps["ri_region"] is not None and native.maps["ri_region"].perms == "rwxp"
    assert native.maps["ri_heap"] is not None and native.maps["ri_heap"].perms == "rwxp"
    assert native.maps["ri_heap"].path == "[heap]"
    _, under = run(build_program("read_implies_exec"), wrapper=mdwe)
    assert under is not None
    # MDWE does not look at brk: the heap still grows writable and executable.
    assert under.maps["ri_heap"] is not None and under.maps["ri_heap"].perms == "rwxp"
    assert "ri_region" not in under.maps


def test_i386_noheader_gets_read_implies_exec_at_exec(build_program: ProgramBuilder) -> None:
    binary = build_program("i386_noheader")
    with binary.open("rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 32 and elf["e_machine"] == "EM_386"
        assert "PT_GNU_STACK" not in {seg["p_type"] for seg in elf.iter_segments()}
    _, out = run(binary)
    assert out is not None
    assert out.steps["personality_query"].rc & READ_IMPLIES_EXEC
    heap = out.maps["heap"]
    assert heap is not None and heap.path == "[heap]" and heap.executable
    stack = out.maps["stack"]
    assert stack is not None and stack.path == "[stack]" and stack.executable


def test_execstack_stack_is_executable_from_the_header(build_program: ProgramBuilder, mdwe: Path) -> None:
    binary = build_program("execstack")
    with binary.open("rb") as f:
        stack_flags = [s["p_flags"] for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_GNU_STACK"]
    assert len(stack_flags) == 1 and stack_flags[0] & PF_X
    for wrapper in (None, mdwe):
        _, out = run(binary, wrapper=wrapper)
        assert out is not None
        stack = out.maps["stack"]
        assert stack is not None and stack.path == "[stack]" and stack.perms == "rwxp"


def test_normal_programs_have_no_executable_stack(build_program: ProgramBuilder) -> None:
    _, out = run(build_program("execstack_mprotect"))
    assert out is not None
    before, after = out.maps["stack_before"], out.maps["stack_after"]
    assert before is not None and before.path == "[stack]" and before.perms == "rw-p"
    # mprotect of one page splits the stack: only that page is executable.
    assert after is not None and after.perms == "rwxp" and after.end - after.start == mmap.PAGESIZE


def test_execheap_page_is_in_the_brk_heap(build_program: ProgramBuilder) -> None:
    _, out = run(build_program("execheap"))
    assert out is not None
    before, after = out.maps["heap_before"], out.maps["heap_after"]
    assert before is not None and before.path == "[heap]" and before.perms == "rw-p"
    assert after is not None and after.path == "[heap]" and after.perms == "rwxp"


def test_int80_mprotect_works_on_a_low_page(build_program: ProgramBuilder) -> None:
    _, out = run(build_program("int80_mprotect"))
    assert out is not None
    low = out.maps["low_region"]
    assert low is not None and low.perms == "rwxp" and low.end <= 1 << 32


def test_foreign_write_target_is_file_text_never_writable(build_program: ProgramBuilder) -> None:
    binary = build_program("foreign_write_procmem")
    _, out = run(binary)
    assert out is not None
    target = out.maps["target"]
    assert target is not None and target.perms == "r-xp" and target.path == str(binary)
    assert out.steps["target_before_call"].rc == 7
    assert out.steps["mem_pwrite"].rc == 6


def test_benign_relro_is_full_relro(build_program: ProgramBuilder) -> None:
    with build_program("benign_relro").open("rb") as f:
        elf = ELFFile(f)
        assert "PT_GNU_RELRO" in {s["p_type"] for s in elf.iter_segments()}
        flags = [t.entry.d_val for t in elf.get_section_by_name(".dynamic").iter_tags("DT_FLAGS")]
    assert flags and flags[0] & DF_BIND_NOW


def test_exec_unlinked_fexecve_runs_under_mdwe(build_program: ProgramBuilder, mdwe: Path) -> None:
    for wrapper in (None, mdwe):
        _, out = run(build_program("exec_unlinked"), wrapper=wrapper)
        assert out is not None
        assert out.steps["true_fexecve"].ok
        assert out.children["true_child"] == "exit=0"


def test_fork_tree_reports_every_child(build_program: ProgramBuilder) -> None:
    _, out = run(build_program("fork_tree"))
    assert out is not None
    assert out.children == {
        "child": "exit=0",
        "true_child": "exit=0",
        "grandchild": "exit=0",
        "middle": "exit=0",
    }
    assert {"child_mmap", "wx_mmap"} <= set(out.steps)


def test_signals_stop_continue_and_sigchld(build_program: ProgramBuilder) -> None:
    _, out = run(build_program("signals"))
    assert out is not None
    assert out.children == {"continuer": "exit=0", "quick": "exit=0"}
    # One SIGCHLD from the continuer, one held back while all were blocked.
    assert out.count == 2


@pytest.mark.parametrize(
    ("name", "args", "count"),
    [
        ("mprotect_flood", ("200",), 200),
        ("threads_flood", ("4", "50"), 200),
        ("cheap_syscalls", ("1000",), 1000),
    ],
)
def test_load_programs_count_their_calls(
    name: str, args: tuple[str, ...], count: int, build_program: ProgramBuilder
) -> None:
    _, out = run(build_program(name), *args)
    assert out is not None and out.count == count


def test_thread_second_reader_was_blocked(build_program: ProgramBuilder) -> None:
    _, out = run(build_program("thread_second"))
    assert out is not None
    assert out.steps["reader_blocked"].ok
    assert out.steps["reader_read"].rc == 1


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code(code: int, build_program: ProgramBuilder, mdwe: Path) -> None:
    for wrapper in (None, mdwe):
        proc, out = run(build_program("exit_code"), str(code), wrapper=wrapper)
        assert proc.returncode == code
        assert out is not None and out.done == 1


@pytest.mark.parametrize(
    ("arg", "sig"), [("SEGV", signal.SIGSEGV), ("SIGTERM", signal.SIGTERM), ("9", signal.SIGKILL)]
)
def test_kill_self(arg: str, sig: signal.Signals, build_program: ProgramBuilder) -> None:
    proc, out = run(build_program("kill_self"), arg)
    assert proc.returncode == -sig
    assert out is None


def test_kill_self_with_a_harmless_signal_carries_on(build_program: ProgramBuilder) -> None:
    proc, out = run(build_program("kill_self"), "CHLD")
    assert proc.returncode == 0
    assert out is not None and out.steps["kill_self"].ok and out.done == 1


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("kill_self", ("NOSUCHSIG",), "unknown signal 'NOSUCHSIG'"),
        ("exit_code", ("256",), "exit code must be 0-255"),
        ("mprotect_flood", ("many",), "not a count: 'many'"),
        ("threads_flood", ("2",), "usage:"),
        ("mdwe_exec", (), "usage:"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    name: str, args: tuple[str, ...], message: str, build_program: ProgramBuilder
) -> None:
    proc, _ = run(build_program(name), *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_mdwe_exec_sets_mdwe_and_it_survives_exec(mdwe: Path) -> None:
    probe = f"import ctypes; print(ctypes.CDLL(None).prctl({PR_GET_MDWE}, 0, 0, 0, 0))"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    under = subprocess.run(
        [str(mdwe), sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert plain.stdout.strip() == "0"
    assert under.stdout.strip() == str(PR_MDWE_REFUSE_EXEC_GAIN)


def test_mdwe_exec_reports_a_missing_program(mdwe: Path) -> None:
    proc = subprocess.run([str(mdwe), "/nonexistent/program"], capture_output=True, text=True, check=False)
    assert proc.returncode == 127
    assert "cannot run /nonexistent/program" in proc.stderr


# --- the builder and the protocol parser ------------------------------------------------------


def test_builder_rebuilds_only_a_stale_binary(build_program: ProgramBuilder) -> None:
    binary = build_program("benign_rw")
    fresh = binary.stat().st_mtime_ns
    assert ProgramBuilder("gcc")("benign_rw").stat().st_mtime_ns == fresh
    os.utime(binary, ns=(0, 0))  # older than its source: stale
    assert ProgramBuilder("gcc")("benign_rw").stat().st_mtime_ns > 0


def test_drop_gnu_stack_refuses_a_file_that_is_not_elf(tmp_path: Path) -> None:
    not_elf = tmp_path / "script"
    not_elf.write_text("#!/bin/sh\n")
    with pytest.raises(ValueError, match="not a little-endian ELF"):
        drop_gnu_stack(not_elf)


def test_parser_reads_every_line_kind(parse_output: Callable[[str], ProgramOutput]) -> None:
    out = parse_output(
        "STEP a mmap rc=0x7f00 errno=0\n"
        "STEP b mprotect rc=-1 errno=EACCES\n"
        "RAN a_call\n"
        "MAPS r 1000-2000 rwxp -\n"
        "MAPS gone unmapped\n"
        "CHILD kid signal=SIGSEGV\n"
        "COUNT 5\n"
        "DONE\n"
    )
    assert out.steps["a"].rc == 0x7F00 and out.steps["a"].ok
    assert out.failed() == {"b": "EACCES"}
    assert out.ran == ["a_call"]
    assert out.maps["r"] is not None and out.maps["r"].executable and out.maps["gone"] is None
    assert out.children == {"kid": "signal=SIGSEGV"}
    assert (out.count, out.done) == (5, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("STEP a mmap rc=0 errno=0\nSTEP a mmap rc=0 errno=0\n", "reported twice"),
        ("BADRET wx_call 0\n", "outside the test program protocol"),
        ("STEP a mmap rc=zero errno=0\n", "outside the test program protocol"),
        ("COUNT 1\nCOUNT 2\n", "COUNT reported twice"),
    ],
)
def test_parser_rejects_malformed_output(
    text: str, problem: str, parse_output: Callable[[str], ProgramOutput]
) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_output(text)
