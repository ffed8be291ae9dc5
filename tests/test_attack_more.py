"""More attacks on enforce mode, each a C program that natively runs code
it produced and, under strict enforce, must not (helpers of test_attack:
the native run first, then no RAN line and every event denied or killed).
Attacks still open are xfail(strict=True) with the hole named."""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
import time
from pathlib import Path

import pytest
from test_attack import _blocked, _native
from test_attack_redteam7 import trace_watched
from test_enforce import STRICT
from test_enforce_fds import mem_fd_server  # noqa: F401 (a fixture)
from test_run_programs import ROOT, TRAMPWATCH, shape, trace


@pytest.mark.parametrize("mode", ["secret", "seal"])
def test_a_mapping_undone_at_exit_is_out_of_reach_of_other_threads(mode, build_program, parse_output,
                                                                   tmp_path):
    """An i386 old_mmap whose block the tracer cannot read (memfd_secret)
    makes an anonymous RWX page at a fixed address; the tracer judges it at
    the call's exit and unmaps it. Meanwhile another thread either writes
    code there and calls it, or mseals the page so the injected munmap
    fails and the caller runs code in it after its "denied" mmap. The other
    threads of the address space are held from the call's entry until it
    is judged."""
    native = _native(build_program, parse_output, "attack_exit_window", mode, "2000")
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    assert native.ran == [f"{mode}_call"]
    traced = trace([str(build_program("attack_exit_window")), mode, "200"], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    out = parse_output(traced.stdout)
    assert out.count == 200 and out.failed()["old_mmap"] == "EACCES"
    assert set(shape(traced.events)) == {("mmap", ("wx-map", "anon-exec"))}
    assert len(traced.events) == 200


def test_a_swapped_descriptor_mapping_is_out_of_reach_of_other_threads(build_program, parse_output, tmp_path):
    """A thread dup2s a memfd holding code and a clean file over one
    descriptor while main maps it R-X at a fixed address; a third thread
    calls the page whenever it holds the code. The exit stop undoes a
    mapping of the memfd; the other threads are held until then."""
    native = _native(build_program, parse_output, "attack_exit_window", "swap", "20000")
    assert native.ran == ["swap_call"]
    traced = trace([str(build_program("attack_exit_window")), "swap", "2000"], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    assert parse_output(traced.stdout).count == 2000
    assert {shape_ for shape_ in shape(traced.events)} == {("mmap", ("exec-written", "exec-unlinked"))}


def _fuse_window(build_program, parse_output, mode: str):
    native = _native(build_program, parse_output, "attack_fuse", mode)
    for label in ("fuse_mount", "secret_create"):
        if label in native.failed():
            pytest.skip(f"cannot run the FUSE window attack here: {label} {native.failed()[label]}")
    assert native.ran == [f"{mode}_call"]


# Refuses the W+X mapping, only logs what cannot be judged: the blocked
# call's siblings then go on (as a policy that lets opaque calls run chooses).
DENY_WX_LOG_OPAQUE = """apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: deny-wx-log-opaque}
spec:
  defaultAction: allow
  rules:
    - name: allow-clone3
      priority: 10
      match: {category: opaque, syscall: clone3}
      action: allow
    - name: deny-wx
      match: {category: [wx-map, exec-written]}
      action: deny
    - name: log-opaque
      match: {category: opaque}
      action: log
"""


def test_a_sealed_mapping_that_cannot_be_undone_kills_the_process(build_program, parse_output, tmp_path):
    """An i386 old_mmap (block in memfd_secret) of a FUSE file the program
    serves, RWX with MAP_POPULATE: the populate waits for the held server
    thread; the blocked call is logged (the policy lets opaque calls run) and
    the held threads go; a sealer thread then mseals the new page, so the
    injected munmap fails (EPERM). The call is reported as what it returned
    (not-enforced: the mapping stayed) and the process dies before it runs
    again, instead of a "denied" over a live RWX page."""
    _fuse_window(build_program, parse_output, "windowseal")
    policy = tmp_path / "policy.yaml"
    policy.write_text(DENY_WX_LOG_OPAQUE)
    traced = trace([str(build_program("attack_fuse")), "windowseal"], tmp_path,
                   "--policy", str(policy), "--mode", "enforce", timeout=60)
    assert parse_output(traced.stdout).ran == [], traced.stdout
    if shape(traced.events) == [("mmap", ("wx-map", "exec-written"))]:
        # The populate ended within the patience (a loaded host answers in
        # another order): no blocked call, the threads stayed held, the
        # mapping was undone at the exit stop before the sealer ran.
        assert traced.events[0]["verdict"] == "denied" and traced.returncode == 0, traced.stderr
        return
    assert shape(traced.events) == [("blocked", ("opaque",)), ("mmap", ("wx-map", "exec-written"))]
    blocked, event = traced.events
    assert blocked["verdict"] == "logged" and blocked["detail"]["facility"] == "blocked-mmap", blocked
    if event["verdict"] == "denied":
        # The held threads went, but the undo ran before the sealer did
        # (checked in /proc): the mapping is gone, the process lives.
        assert event["result"] == -errno.EACCES and traced.returncode == 0, traced.stderr
        return
    assert traced.returncode == 137, traced.stderr
    assert event["verdict"] == "not-enforced" and event["result"] != -errno.EACCES, event
    assert event["reason"].startswith("the call returned 0x90000000"), event


def test_a_sealed_mapping_under_strict_is_killed_while_blocked(build_program, parse_output, tmp_path):
    """The same attack under strict: the sealer never runs, the blocked call
    is refused (opaque) and the process killed."""
    _fuse_window(build_program, parse_output, "windowseal")
    traced = trace([str(build_program("attack_fuse")), "windowseal"], tmp_path, *STRICT, timeout=60)
    _blocked(traced, parse_output)
    assert traced.returncode == 137, traced.stderr
    assert shape(traced.events) == [("blocked", ("opaque",))]


def test_a_slow_mapping_undone_at_exit_is_out_of_reach_of_other_threads(build_program, parse_output,
                                                                        tmp_path):
    """As the fast old_mmap above, but the call waits in the kernel for
    the held FUSE server after the mapping exists: the other threads stay
    held (the call is no FIFO open) until BLOCKED_PATIENCE, then the
    blocked call is judged `opaque` (strict: the process is killed, and its
    own FUSE connection aborted so its death does not hang in a flush)."""
    _fuse_window(build_program, parse_output, "window")
    traced = trace([str(build_program("attack_fuse")), "window"], tmp_path, *STRICT, timeout=60)
    _blocked(traced, parse_output)
    assert traced.returncode == 137, traced.stderr
    assert shape(traced.events) == [("blocked", ("opaque",))]
    event = traced.events[0]
    assert event["detail"]["facility"] == "blocked-mmap" and event["verdict"] == "killed", event


def test_an_open_that_blocks_long_keeps_its_siblings_held(build_program, parse_output, tmp_path):
    """An open of a FUSE symlink to the program's own /proc mem file, whose
    lookup another process answers after 1 s, longer than HOLD_PATIENCE; a
    spinner thread pwrites code through the descriptor number the open will
    get. The open is no FIFO's: its siblings stay held until its result is
    judged (foreign-write, refused and closed), so the spinner never gets
    the descriptor."""
    native = _native(build_program, parse_output, "attack_slow_open")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.ran == ["slow_open_call"]
    for _ in range(3):
        traced = trace([str(build_program("attack_slow_open"))], tmp_path, *STRICT, timeout=60)
        _blocked(traced, parse_output)
        assert parse_output(traced.stdout).failed() == {"slow_open": "EACCES"}
        assert shape(traced.events) == [("openat", ("foreign-write",))]


@pytest.fixture
def bystander():
    """A process outside the traced tree (run by the same user), blocked in
    a sleep: its pid. Handed out once the kernel shows it in the sleep's
    call (clock_nanosleep or nanosleep), not while it still starts (the
    attack looks for the `syscall` instruction it is stopped after)."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        for _ in range(1000):  # a guard, not a timing: sleep reaches its call in milliseconds
            with contextlib.suppress(OSError):
                if Path(f"/proc/{process.pid}/syscall").read_text().split()[0] in ("230", "35"):
                    break
            time.sleep(0.01)
        else:
            pytest.fail("the bystander sleep never reached its sleeping call")
        yield str(process.pid)
    finally:
        process.kill()
        process.wait()


def test_a_process_outside_the_tree_cannot_be_made_a_puppet(build_program, parse_output, bystander, tmp_path):
    """The program seizes a process nobody traces and drives its registers
    (no POKE: its stack is written with process_vm_writev) to open
    /proc/<program>/mem and write code over the program's own text. Under a
    tracer only processes outside the tree can be attached: strict refuses
    PTRACE_SEIZE/ATTACH as opaque (ptrace-attach)."""
    native = _native(build_program, parse_output, "attack_puppet", bystander)
    assert native.ran == ["puppet_call"]
    traced = trace([str(build_program("attack_puppet")), bystander], tmp_path, *STRICT)
    assert parse_output(traced.stdout).ran == [], traced.stdout
    assert shape(traced.events) == [("ptrace", ("opaque",))]
    assert traced.events[0]["verdict"] == "denied" and traced.events[0]["result"] == -errno.EPERM
    assert traced.events[0]["detail"]["facility"] == "ptrace-attach"
    assert parse_output(traced.stdout).failed() == {"seize": "EPERM"}


def test_protection_keys_never_grant_a_write(build_program, parse_output, tmp_path):
    """The program's text page with a fresh key, then execute-only (the
    kernel's own key), every key opened in PKRU each time: the writes fault
    natively (PKRU only takes data access away), and strict lets the same
    calls run (no exec is gained) with the same outcome."""
    native = _native(build_program, parse_output, "attack_pkey")
    if "pkey_alloc" in native.failed():
        pytest.skip(f"no protection keys here: pkey_alloc fails with {native.failed()['pkey_alloc']}")
    expected = {"keyed_text": "EFAULT", "exec_only_text": "EFAULT"}
    assert native.failed() == expected and native.ran == []
    traced = trace([str(build_program("attack_pkey"))], tmp_path, *STRICT)
    out = parse_output(traced.stdout)
    assert (traced.returncode, out.done, out.failed(), out.ran) == (0, 1, expected, []), traced.stderr
    assert traced.events == []


def test_system_v_views_made_by_mremap_keep_the_segments_history(build_program, parse_output, tmp_path):
    """A segment written through a read-write attach, then seen through a
    read-only attach aliased by mremap(old_size=0) and another moved by
    mremap over clean memory: neither view came from a shmat, and gaining
    exec on either is the segment's w-to-x (dual-map: the writable attach
    is still there)."""
    native = _native(build_program, parse_output, "attack_shm_mremap")
    assert native.ran == ["alias_call", "moved_call"]
    traced = trace([str(build_program("attack_shm_mremap"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("dual-map", "w-to-x"))] * 2
    assert parse_output(traced.stdout).failed() == {"alias_rx": "EACCES", "moved_rx": "EACCES"}


@pytest.mark.parametrize("how", ["mremap", "memfd"])
def test_a_clone_vm_process_races_like_a_thread(how, build_program, parse_output, tmp_path):
    """mem_race with its attacker made by clone(CLONE_VM) without
    CLONE_THREAD: another process (pid, descriptor table) in the same
    address space replaces the clean page while main mprotects it R-X.
    Its calls are judged one at a time with main's (the address space
    comes from kcmp, not from the clone flags)."""
    program = str(build_program("mem_race"))
    assert _native(build_program, parse_output, "mem_race", how, "300", "vm").ran == ["race_call"]
    traced = trace([program, how, "300", "vm"], tmp_path, *STRICT, timeout=300)
    out = parse_output(traced.stdout)
    # COUNT is a racy look (maps, then the bytes): it may count a round whose
    # page held code only after its clean R-X; RAN looks with the attacker parked.
    assert (traced.returncode, out.done, out.ran) == (0, 1, []), traced.stderr
    assert all(event["verdict"] == "denied" for event in traced.events)


@pytest.mark.parametrize(("mode", "expected"), [("secret", ("dual-map", "w-to-x")),
                                                ("race", ("dual-map", "w-to-x")),
                                                ("launder", ("w-to-x", "anon-exec"))])
def test_ipc_shmat_address_comes_from_the_kernel(mode, expected, build_program, parse_output, tmp_path):
    """i386 ipc(SHMAT) stores the attach address at a pointer in memory. A
    written segment attached with SHM_REMAP over a clean page while the
    pointer is unreadable (secret) or rewritten by a thread (race) must not
    leave the page modelled as clean; a clean segment attached where the
    kernel chooses while a thread writes the address of a page holding code
    there (launder) must not make that page look like the clean segment.
    The address is the call's own (the kernel maps there) or the one new
    view of the segment in the maps."""
    native = _native(build_program, parse_output, "attack_ipc_shmat_remap", mode)
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    call = "launder_call" if mode == "launder" else "ipc_call"
    assert native.ran == [call]
    traced = trace([str(build_program("attack_ipc_shmat_remap")), mode], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", expected)]
    rx = "decoy_rx" if mode == "launder" else "clean_rx"
    assert parse_output(traced.stdout).failed() == {rx: "EACCES"}


@pytest.mark.parametrize("mode", ["mmap", "mprotect"])
def test_a_file_mapped_through_its_loop_device_is_exec_written(mode, build_program, parse_output, tmp_path):
    """Code written into a file, the file bound read-only to a loop device,
    the device opened read-only and mapped R-X (or R-- then mprotect R-X):
    the block device's pages are the file's bytes under another object. A
    block device counts as written (its blocks hold files the tree may have
    written): exec-written."""
    args = [str(tmp_path / "code")] + ([] if mode == "mmap" else ["mprotect"])
    native = _native(build_program, parse_output, "attack_loop_map", *args)
    for label in ("loop_control", "loop_free", "loop_open", "loop_configure"):
        if label in native.failed():
            pytest.skip(f"cannot bind a file to a loop device: {label} {native.failed()[label]}")
    assert native.ran == ["loop_call"]
    traced = trace([str(build_program("attack_loop_map")), *args], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [(mode, ("exec-written",))]
    assert parse_output(traced.stdout).failed() == {"loop_rx": "EACCES"}


def test_a_sibling_asleep_in_the_kernel_cannot_keep_a_refused_descriptor(build_program, parse_output,
                                                                         tmp_path):
    """Processes sharing the program's descriptor table (CLONE_FILES) sleep
    in an exec whose argument page a FUSE server (another process) holds
    back, so a ptrace interrupt does not stop them; main opens a FUSE
    symlink to its own /proc mem file O_RDWR. The opener goes into its call
    after HOLD_PATIENCE without their stops; the server answers their READs
    just after the open's READLINK, and each exec unshares the table with
    the new descriptor in it (natively the new image writes code over main's
    text through its copy). The open is refused and closed at its exit, and
    the processes that had not stopped when it started are killed: their
    exec may hold a copy (before this, every one wrote the code although
    the open said EACCES)."""
    native = _native(build_program, parse_output, "attack_asleep_sibling")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.ran == ["asleep_sibling_call"]
    for _ in range(3):
        traced = trace([str(build_program("attack_asleep_sibling"))], tmp_path, *STRICT, timeout=60)
        _blocked(traced, parse_output)
        out = parse_output(traced.stdout)
        assert out.count == 0 and out.failed() == {"asleep_open": "EACCES"}, traced.stdout
        assert shape(traced.events) == [("openat", ("foreign-write",))]


def test_a_blocked_open_leaves_no_process_that_shares_its_descriptor_table(build_program, parse_output,
                                                                           tmp_path):
    """A server process mounts FUSE in a mount namespace of its own; the
    program reaches it through /proc/SERVER/root. A thread's
    clone(CLONE_FILES | CLONE_PARENT_SETTID) stores the parent tid in a page
    of that filesystem the server holds back: the new process exists but
    is not woken. Main opens a path whose "slow" component the server
    looks up in 3 s and which then leads (..) to the server's mem file.
    The open is judged `blocked` at 2 s and the program killed, but the
    open completes afterwards (the FUSE mount is not in the program's mount
    namespace: not aborted), so the new process, which shares the table,
    could write code into the server through it (natively it does). The
    kill takes every traced process kcmp says shares the opener's table,
    those whose first stop the tracer has not seen among them (before this,
    that one stayed stopped awaiting its creator's clone event and the
    tracer waited for it for ever)."""
    native = _native(build_program, parse_output, "attack_blocked_orphan")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.ran == ["orphan_call"]
    traced = trace([str(build_program("attack_blocked_orphan"))], tmp_path, *STRICT, timeout=30)
    _blocked(traced, parse_output)
    assert traced.returncode == 137, traced.stderr
    assert shape(traced.events) == [("blocked", ("opaque",))]
    assert "CHILD" not in traced.stdout, traced.stdout


def test_a_process_made_while_its_creator_dies_is_not_waited_for_for_ever(build_program, parse_output,
                                                                           tmp_path):
    """The same clone, but the program exits instead of opening and a
    helper process has the server answer the held page 4 s later: the new
    process is woken after its creator's process is gone and reaped (it is
    reparented), so the clone event it is held for never comes. It is let
    go as an orphan at its first stop (before this, the tracer waited for
    it for ever)."""
    native = _native(build_program, parse_output, "attack_blocked_orphan", "exit")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    traced = trace([str(build_program("attack_blocked_orphan")), "exit"], tmp_path, *STRICT, timeout=30)
    out = parse_output(traced.stdout)
    assert "orphan_runs" in out.steps and out.failed() == {}, traced.stdout
    assert traced.events == []


def test_an_opener_killed_before_its_descriptor_is_closed_takes_its_table_sharers(build_program, parse_output,
                                                                                   tmp_path):
    """Main opens the mem file of a process sharing its descriptor table
    (CLONE_FILES) while a plain child spins on /proc/<main>/fd/<the number
    the open gets> and SIGKILLs main the moment it names a mem file: the
    tracer, still judging at the exit stop (or never given it), cannot close
    the refused descriptor in a thread that is gone, and the sharer, let go
    with the hold, wrote code over its own text through it (before this,
    two runs in three ran it under strict). The opener gone inside its held
    call (or before its descriptors were closed) kills every process of the
    hold. Later: the opener killed at its exit stop, before the tracer read
    its table, shows no descriptor (its table already let go, alive in the
    sharer): that was taken as nothing to judge, the hold let go, and the
    sharer ran its code in about one run in 35; a descriptor the kernel made
    and the table does not show is now the opener gone."""
    native = _native(build_program, parse_output, "attack_opener_killed")
    assert native.ran == ["opener_killed_call"]
    for _ in range(5):
        traced = trace([str(build_program("attack_opener_killed"))], tmp_path, *STRICT, timeout=60)
        assert parse_output(traced.stdout).ran == [], traced.stdout
        # A table already let go by the dying opener reads as unreadable
        # (opaque) or not at all; nothing the open made is ever allowed.
        assert set(shape(traced.events)) <= {("openat", ("foreign-write",)), ("openat", ("opaque",))}, \
            traced.events
        assert all(e["verdict"] in ("denied", "not-enforced", "killed") for e in traced.events), traced.events


def test_a_receiver_killed_before_its_descriptor_is_judged_takes_its_table_sharers(
        build_program, parse_output, mem_fd_server, tmp_path):  # noqa: F811
    """The same route through SCM_RIGHTS: main receives, on a connection of
    a CLONE_FILES sharer, the sharer's /proc/PID/mem for writing (from an
    untraced helper); a plain child SIGKILLs main the moment the descriptor
    is in its table. At the receive's exit stop the dying receiver's table
    lists nothing: that was taken as nothing received, the hold let go, and
    the sharer wrote code through the descriptor and ran it under strict
    (1 run in 40). An empty table at a receive's exit is the receiver gone:
    every process of the hold dies (0 in 40). Later (11 runs in 200): the
    receiver died between the listing of its table and the look at each
    descriptor, and the one gone meanwhile was skipped; a listed descriptor
    gone at its look is the receiver gone too (0 in 400)."""
    program = str(build_program("attack_recv_killed"))
    native = _native(build_program, parse_output, "attack_recv_killed", mem_fd_server)
    assert native.ran == ["recv_killed_call"]
    for _ in range(8):
        traced = trace([program, mem_fd_server], tmp_path, *STRICT, timeout=60)
        assert parse_output(traced.stdout).ran == [], traced.stdout
        assert set(shape(traced.events)) <= {("recvmsg", ("foreign-write",)), ("recvmsg", ("opaque",))}, \
            traced.events
        assert all(e["verdict"] in ("denied", "not-enforced", "killed") for e in traced.events), traced.events


def test_a_child_whose_creator_died_before_its_fork_event_keeps_the_written_history(
        build_program, parse_output, tmp_path):
    """A process writes code into a private copy of its own program's first
    page and makes it read-only; a second thread forks in a loop while the
    main thread execs, which kills that thread, sometimes with a child made
    and its fork event not yet taken. Such a child was learnt from its maps
    (as if attached), where the page shows read-only and no history: made
    read+execute, its code ran under strict with no event (2-6 children in
    each of 3 runs of 10 tries). Learnt from its maps, a child whose creator
    is unknown now has unknown (possibly written) history everywhere."""
    native = _native(build_program, parse_output, "attack_orphan_history", "10")
    assert native.ran == ["orphan_call"] and native.count > 0, native
    traced = trace([str(build_program("attack_orphan_history")), "10"], tmp_path, *STRICT, timeout=120)
    assert traced.returncode == 0, traced.stderr
    out = parse_output(traced.stdout)
    assert (out.ran, out.count, out.done) == ([], 0, 1), traced.stdout
    assert traced.events and set(shape(traced.events)) == {("mprotect", ("w-to-x", "execmod"))}
    assert {e["verdict"] for e in traced.events} == {"denied"}


def test_a_clone_parent_child_let_go_unknown_is_held_with_the_table_it_shares(build_program, parse_output,
                                                                              tmp_path):
    """A process whose parent is gone makes children with
    clone(CLONE_PARENT | CLONE_FILES): each shares main's descriptor table
    and names the reaper, a process the tracer does not know, as parent, so
    the tracer lets it go the moment its first stop is seen (its creator
    "gone"), before its creator's event says what it shares. Let go while
    main's open of another process's mem file was held, or learnt as
    sharing no table (so the next hold left it running), such a child
    wrote code through the descriptor before it was closed, and the target
    ran it under strict (5 runs in 5). A task learnt with no creator's event
    now takes its table and address space from kcmp, and one let go while a
    hold is over them is kept with the hold's stops (0 in 6)."""
    native = _native(build_program, parse_output, "attack_parent_clone_hold")
    assert native.ran == ["parent_clone_call"] and native.count == 1, native
    for _ in range(2):
        traced = trace([str(build_program("attack_parent_clone_hold"))], tmp_path, *STRICT, timeout=60)
        assert traced.returncode == 0, traced.stderr
        out = parse_output(traced.stdout)
        assert (out.ran, out.count, out.done) == ([], 0, 1), traced.stdout
        assert traced.events and set(shape(traced.events)) == {("openat", ("foreign-write",))}, traced.events
        assert {e["verdict"] for e in traced.events} == {"denied"}


def test_a_clone_parent_child_whose_creator_execs_before_its_event_is_not_held_for_ever(
        build_program, parse_output, tmp_path):
    """As attack_fork_exec_orphan, but the forking thread makes its children
    with clone(CLONE_PARENT): each names main, its creator's parent, as its
    parent. A child seen before its creator's event, the creator killed by
    its process's exec before reporting it, was kept stopped for an event
    that never comes: the tracer releases such children by the number of
    the process that exec'd or died, and main's was never that; main waited
    for the child for ever, and so did trampwatch (2 runs in 3 of 10 tries
    hung). A new process now waits for its creator's event at most
    ORPHAN_PATIENCE, then is learnt from its maps as an orphan."""
    native = _native(build_program, parse_output, "attack_fork_exec_orphan", "20", "parent")
    assert native.count == 20, native
    traced = trace_watched([str(build_program("attack_fork_exec_orphan")), "20", "parent"], tmp_path, *STRICT,
                           timeout=90)
    assert traced.returncode == 0, traced.stderr
    assert parse_output(traced.stdout).count == 20, traced.stdout
    assert traced.events == []


def test_a_clone_parent_child_sharing_its_creators_space_joins_its_model(build_program, parse_output,
                                                                        tmp_path):
    """C, whose parent is gone, maps a clean private copy of its program's
    first page read-only, then makes N with clone(CLONE_PARENT | CLONE_VM):
    N names the reaper as parent and was let go at its first stop, learnt
    from its maps as a process with an address space of its own in the
    model. N made the page read-write, wrote code and made it read-only:
    those calls went to N's model only, and C's, where the page was still
    clean and never written, let C make it read+execute and run it under
    strict with no event (4 runs in 4). A task let go with no creator's
    event that shares a traced task's address space (kcmp) now joins that
    task's model."""
    native = _native(build_program, parse_output, "attack_parent_clone_vm")
    assert native.ran == ["parent_vm_call"], native
    for _ in range(3):
        traced = trace([str(build_program("attack_parent_clone_vm"))], tmp_path, *STRICT, timeout=60)
        assert traced.returncode == 0, traced.stderr
        out = parse_output(traced.stdout)
        assert (out.ran, out.done, out.failed()) == ([], 1, {"page_rx": "EACCES"}), traced.stdout
        assert set(shape(traced.events)) == {("mprotect", ("w-to-x", "execmod"))}, traced.events
        assert {e["verdict"] for e in traced.events} == {"denied"}


def test_a_caller_killed_before_its_mapping_is_undone_takes_its_space_sharers(build_program,
                                                                              parse_output, tmp_path):
    """An i386 old_mmap with its block in memfd_secret asks for an RWX page
    at a fixed address (judged and undone at its exit); a plain child spins
    on the program's maps and SIGKILLs it the moment the page is there, so
    the tracer's injected munmap finds no thread; a process sharing the
    address space (CLONE_VM), held meanwhile, then wrote code into the page
    and ran it (before this, three runs in four under strict). The caller
    gone while its result was judged kills every process of the hold."""
    native = _native(build_program, parse_output, "attack_undo_killed")
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    assert native.ran == ["undo_killed_call"]
    for _ in range(4):
        traced = trace([str(build_program("attack_undo_killed"))], tmp_path, *STRICT, timeout=60)
        assert parse_output(traced.stdout).ran == [], traced.stdout
        assert set(shape(traced.events)) <= {("mmap", ("wx-map", "anon-exec"))}, traced.events


@pytest.mark.parametrize("mode", ["", "ATTR=0", "mmap"])
def test_judging_asks_nothing_of_a_fuse_server_the_tracer_holds(mode, build_program, parse_output, tmp_path):
    """A FUSE file served by a thread of the program (OPEN answered ENOSYS,
    LOOKUP valid for long: an open asks the server nothing) opened O_RDWR:
    the server thread is held until the open is judged, so the tracer's own
    look at the descriptor must send the filesystem no request (statfs
    always did; a stat does once attributes expire: ATTR=0). With "mmap", a
    child maps the file R-X while main waits, held, in a FIFO's open: the
    fstat at the mmap's entry must not ask either. Before this the tracer
    hung for ever in fuse_statfs / fuse_do_getattr, SIGTERM included. The
    fs type comes from the descriptor's mount id in the program's
    mountinfo, stats from the kernel's cached attributes."""
    args = [mode] if mode else []
    native = _native(build_program, parse_output, "attack_fuse_stat", *args)
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.failed() == {} and native.done
    traced = trace([str(build_program("attack_fuse_stat")), *args], tmp_path, *STRICT, timeout=30)
    out = parse_output(traced.stdout)
    assert out.done and "rw_write" in out.steps, traced.stdout
    if mode == "mmap":
        assert out.failed() == {"child_rx_mmap": "EACCES"}, traced.stdout
        assert shape(traced.events) == [("mmap", ("exec-written",))]
    else:
        assert out.failed() == {} and traced.events == [], traced.stdout
    assert traced.returncode == 0


def test_the_exit_look_at_a_mapping_asks_nothing_of_a_held_fuse_server(build_program, parse_output, tmp_path):
    """main maps the FUSE file R-X itself (attributes expire at once); its
    server thread shares the descriptor table, so it is held until the
    mmap's exit is judged, and the look at what the kernel mapped
    (/proc/PID/map_files) must not ask the server anything. Before this the
    tracer hung for ever in fuse_do_getattr under default enforce (the
    mmap is allowed at entry, logged exec-written)."""
    native = _native(build_program, parse_output, "attack_fuse_stat", "exitmap")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.failed() == {} and native.done
    traced = trace([str(build_program("attack_fuse_stat")), "exitmap"], tmp_path, "--mode", "enforce",
                   timeout=30)
    out = parse_output(traced.stdout)
    assert out.done and out.failed() == {} and traced.returncode == 0, traced.stdout + traced.stderr
    assert shape(traced.events) == [("mmap", ("exec-written",))]


def test_the_tracer_reads_no_file_of_a_filesystem_the_tree_mounted(build_program, parse_output, tmp_path):
    """A FUSE filesystem the program mounts in the tracer's own mount
    namespace (the run gets one of its own: `unshare -m`), served by the
    program's thread, holds the executable a child runs; that program makes
    a W^X event whose caller is in it. Any file read of the tracer's there
    (the exec's ELF headers, the caller's symbols) is a request the program's
    server must answer, and that server may be a task the tracer keeps
    stopped at that moment: the tracer would wait for ever. The server counts
    the requests of processes outside the program's tree (COUNT): none, as
    natively (before: 19, the ELF read at the exec and to name the caller).
    The event is still reported; its caller is not named from prog (its
    return address cannot be checked without prog's bytes): libc, no symbol."""
    prog, payload = str(build_program("attack_fuse_exec")), str(build_program("wx_map"))
    in_namespace = ["unshare", "-m", "--propagation", "private"]
    native = subprocess.run([*in_namespace, prog, payload], capture_output=True, text=True, timeout=60)
    out = parse_output(native.stdout)
    if "fuse_mount" in out.failed() or (native.returncode != 0 and "unshare" in native.stderr):
        why = out.failed() or native.stderr.strip()
        pytest.skip(f"cannot mount FUSE in a new mount namespace here: {why}")
    assert out.failed() == {} and out.count == 0 and out.ran == ["wx_call"], native.stdout + native.stderr
    json_path = tmp_path / "events.jsonl"
    run = [*TRAMPWATCH, "run", "--json", str(json_path), "--", prog, payload]
    traced = subprocess.run([*in_namespace, *run], capture_output=True, text=True, timeout=60, cwd=ROOT)
    out = parse_output(traced.stdout)
    assert traced.returncode == 0 and out.failed() == {} and out.ran == ["wx_call"], traced.stdout
    assert out.count == 0, traced.stderr
    events = [json.loads(line) for line in json_path.read_text().splitlines()]
    wx = [e for e in events if e["type"] == "event" and "wx-map" in e["categories"]]
    assert [(e["syscall"], e["verdict"]) for e in wx] == [("mmap", "logged")], events
    assert wx[0]["caller"]["symbol"] is None and not wx[0]["caller"]["object"].endswith("/prog"), wx[0]
