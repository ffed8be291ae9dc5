"""trampfd across processes and threads, the syscall number rule, the cost of
the emulator for unrelated I/O, and W^X: compiled C programs under
`trampwatch run --emulate-trampfd`."""

from __future__ import annotations

from test_trampfd_support import EXAMPLES, build, native, program, trace


def invoke(tmp_path, *args: str, options: tuple[str, ...] = (), emulate: bool = True):
    return trace([str(program("tf_invoke")), *args], tmp_path, *options, emulate=emulate)


def test_two_threads_invoke_one_trampoline_concurrently(tmp_path) -> None:
    run = invoke(tmp_path, "threads", "50000")
    assert run.returncode == 0, run.stderr
    assert run.out.pairs("threads") == {"calls": 100000, "bad": 0}


def test_thread_started_before_the_first_trampfd_uses_it(tmp_path) -> None:
    run = invoke(tmp_path, "late_thread")
    assert run.returncode == 0, run.stderr
    assert run.out.errno("thread_read") == "0"
    assert run.out.ints("thread_map") == [4096, 0, 2]


def test_no_signal_is_lost_while_the_emulator_injects_syscalls(tmp_path) -> None:
    run = invoke(tmp_path, "signals", "200")
    assert run.returncode == 0, run.stderr
    counts = run.out.pairs("signals")
    assert counts["sent"] > 0
    assert counts["received"] == counts["sent"]


def test_fork_child_does_not_inherit_the_trampoline(tmp_path) -> None:
    run = invoke(tmp_path, "fork")
    assert run.returncode == 0, run.stderr
    assert run.out.ints("before") == [6]
    # the page is don't-copy: unmapped in the child, which gets SIGSEGV (SEGV_MAPERR)
    assert run.out.ints("child_mapped") == [0]
    assert run.out.segv["child"] == {"code": 1, "addr": 0, "rip": 0}
    assert run.out.children["fork"] == "exit=77"
    assert run.out.ints("after") == [7]  # the parent's trampoline still works


def test_exec_closes_the_descriptor_and_keeps_a_dup(tmp_path) -> None:
    run = invoke(tmp_path, "exec")
    assert run.returncode == 0, run.stderr
    assert run.out.ints("exec_before") == [8]
    assert run.out.errno("cloexec_gone") == "EBADF"
    assert run.out.errno("copy_kept") == "0"
    assert run.out.errno("copy_context") == "0" and run.out.ints("copy_nregs") == [2]
    assert run.out.ints("old_mapped") == [0]
    assert run.out.ints("exec_after") == [10]  # the new image maps the same trampfd


def test_descriptor_passed_over_a_unix_socket(tmp_path) -> None:
    run = invoke(tmp_path, "pass")
    assert run.returncode == 0, run.stderr
    assert run.out.errno("send") == "0"
    assert run.out.pairs("received") == {"floor": 1}
    assert run.out.values["child_sees"] == "nregs=2 rsi=300"  # the creator's context
    assert run.out.ints("child_result") == [301]
    assert run.out.children["pass"] == "exit=0"
    assert run.out.ints("parent_result") == [401]  # the receiver's change is seen by the creator


def test_real_process_madvise_passes_through_untouched(tmp_path) -> None:
    native_code, native_out = native([str(program("tf_invoke")), "madvise"])
    run = invoke(tmp_path, "madvise")
    assert native_code == run.returncode == 0
    assert native_out.steps["process_madvise"] == (16 * 4096, "0")
    assert run.out.steps == native_out.steps
    assert run.out.values == native_out.values
    assert not run.events  # nothing was taken for trampfd


def test_other_syscall_number(tmp_path) -> None:
    binary = build(EXAMPLES / "closure_v1.c", "-DTRAMPFD_NR=500", name="closure_v1_nr500")
    served = trace([str(binary)], tmp_path, "--trampfd-nr", "500")
    assert served.returncode == 0, served.stderr
    assert "by_ten(1, 2) = 30" in served.stdout
    not_served = trace([str(binary)], tmp_path)
    assert not_served.returncode == 1  # 500 is no syscall: ENOSYS, and the example gives up
    assert "Function not implemented" in not_served.stderr


def test_unrelated_io_never_stops_in_the_tracer(tmp_path) -> None:
    few = invoke(tmp_path, "io", "10")
    many = invoke(tmp_path, "io", "20000")
    assert few.returncode == many.returncode == 0
    assert many.out.pairs("io") == {"n": 20000, "sum": 45 + 10}  # add(i, 1), i < 10
    # 20000 rounds of pwrite, pread, lseek, read, write, dup and close on
    # ordinary descriptors cost no stop at all
    assert few.summary["stops"] == many.summary["stops"]


def test_wx_strict_allows_the_trampfd_closure(tmp_path) -> None:
    run = invoke(tmp_path, "closure", "trampfd", options=("--policy", "strict"))
    assert run.returncode == 0, run.stderr
    assert run.out.ints("closure") == [4002]
    assert run.events and all(e["categories"] == ["trampfd"] for e in run.events)
    assert all(e["verdict"] == "allowed" for e in run.events)


def test_wx_flags_the_same_closure_on_an_rwx_page(tmp_path) -> None:
    logged = invoke(tmp_path, "closure", "rwx")
    assert logged.returncode == 0 and logged.out.ints("closure") == [4002]
    assert [(e["syscall"], "wx-map" in e["categories"], e["verdict"]) for e in logged.events] == [
        ("mmap", True, "logged")]
    refused = invoke(tmp_path, "closure", "rwx", options=("--policy", "strict", "--no-kernel-deny"))
    assert refused.out.errno("rwx") == "EACCES"
    assert [(e["syscall"], "wx-map" in e["categories"], e["verdict"]) for e in refused.events] == [
        ("mmap", True, "denied")]


def test_trampfd_nr_of_an_existing_syscall_is_refused(tmp_path) -> None:
    run = trace(["/bin/true"], tmp_path, "--trampfd-nr", "9")
    assert run.returncode == 2
    assert "--trampfd-nr 9 is mmap on x86-64" in run.stderr
