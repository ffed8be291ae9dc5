"""Attacks on enforce mode (issue 10), each a C program that natively runs
code it wrote (checked first, so the attack means something) and, under
strict enforce, must not: no RAN line, and every reported event denied or
killed. Attacks still open are xfail(strict=True) with the hole named, so
they fail loudly once closed."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
from test_enforce import STRICT, STRICT_TRACED
from test_enforce_fds import mem_fd_server  # noqa: F401 (a fixture)
from test_run_programs import shape, trace


def _native(build_program, parse_output, name: str, *args: str):
    done = subprocess.run([str(build_program(name)), *args], capture_output=True, text=True, timeout=120)
    return parse_output(done.stdout)


def _blocked(traced, parse_output) -> None:
    assert parse_output(traced.stdout).ran == [], traced.stdout
    assert traced.events, traced.stderr
    for event in traced.events:
        assert event["verdict"] in ("denied", "killed"), event
        if event["verdict"] == "denied":
            assert event["result"] == -errno.EACCES


def test_partial_mprotect_history_comes_from_the_kernel(build_program, parse_output, tmp_path):
    """mprotect(RW) failing part-way (ENOMEM at a hole, EACCES at a shared
    read-only view) still made the first page writable: the later R-X is
    w-to-x, judged from the maps read at the failed call's exit."""
    native = _native(build_program, parse_output, "attack_partial_mprotect")
    assert native.failed() == {"hole_partial_mprotect": "ENOMEM", "shared_partial_mprotect": "EACCES"}
    assert native.ran == ["hole_call", "shared_call"]
    traced = trace([str(build_program("attack_partial_mprotect"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "execmod"))] * 2
    out = parse_output(traced.stdout)
    assert out.failed()["hole_rx_mprotect"] == "EACCES" and out.failed()["shared_rx_mprotect"] == "EACCES"


def test_old_mmap_block_in_secret_memory_is_judged_by_the_mapping_made(build_program, parse_output, tmp_path):
    """i386 old_mmap (int $0x80) whose argument block lives in memfd_secret
    memory: the tracer cannot read it, the kernel can. The exit stop judges
    the mapping the kernel made (anonymous RWX), undoes it and fails the call."""
    native = _native(build_program, parse_output, "attack_old_mmap", "secret")
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    assert native.ran == ["secret_old_mmap_call"]
    traced = trace([str(build_program("attack_old_mmap")), "secret"], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mmap", ("wx-map", "anon-exec"))]
    assert traced.events[0]["prot"] == "rwx" and int(traced.events[0]["addr"], 16) != 0
    assert parse_output(traced.stdout).failed()["secret_old_mmap"] == "EACCES"


def test_old_mmap_block_rewritten_by_a_thread_is_judged_by_the_mapping_made(build_program, parse_output,
                                                                             tmp_path):
    """A thread flips old_mmap's prot between RW and RWX while the call is
    made: what the tracer read at entry may not be what the kernel read; the
    exit stop's look at the maps catches every such win."""
    native = _native(build_program, parse_output, "attack_old_mmap", "race", "20000")
    assert native.ran == ["race_old_mmap_call"]
    traced = trace([str(build_program("attack_old_mmap")), "race", "3000"], tmp_path, *STRICT_TRACED,
                   timeout=300)
    _blocked(traced, parse_output)
    assert parse_output(traced.stdout).count == 0
    assert {shape_ for shape_ in shape(traced.events)} == {("mmap", ("wx-map", "anon-exec"))}


def test_failed_fixed_mmap_gap_is_learnt_from_the_kernel(build_program, parse_output, tmp_path):
    """A MAP_FIXED mmap refused by the file's own mmap handler (a perf ring
    of the wrong size) after the kernel cleared the old range leaves a gap;
    a MAP_GROWSDOWN region grown into it must not be judged as the clean
    file page the model remembered there."""
    native = _native(build_program, parse_output, "attack_fixed_gap")
    if "perf_open" in native.failed():
        pytest.skip(f"perf_event_open is refused here: {native.failed()['perf_open']}")
    assert native.failed() == {"fixed_fail_mmap": "EINVAL"}
    assert native.maps["after_fail"] is None and native.ran == ["grown_call"]
    traced = trace([str(build_program("attack_fixed_gap"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed()["grown_rx_mprotect"] == "EACCES"


def test_core_dump_written_by_the_kernel_then_mapped_executable(build_program, parse_output, tmp_path):
    """A child dumps core with code in an anonymous page; no process of the
    tree opens the core file for writing (the kernel writes it). The parent
    maps the page of the core holding the code R-X: the core's inode changed
    after the run started, so it counts as written (exec-written)."""
    native = _native(build_program, parse_output, "attack_core_dump")
    if "core_file" in native.failed():
        pytest.skip("core_pattern does not write a core file in the current directory "
                    f"({Path('/proc/sys/kernel/core_pattern').read_text().strip()!r})")
    assert native.ran == ["core_call"]
    traced = trace([str(build_program("attack_core_dump"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mmap", ("exec-written",))]
    assert parse_output(traced.stdout).failed()["core_rx_mmap"] == "EACCES"


def test_overlay_file_written_through_the_overlay_mapped_through_the_upper_layer(build_program, parse_output,
                                                                                tmp_path):
    """Code written into merged/code of an overlay the program mounted in its
    own mount namespace, then upper/code (the same data, another device and
    inode) mapped R-X: its inode changed during the run (exec-written)."""
    native = _native(build_program, parse_output, "attack_overlay")
    if "ovl_mount" in native.failed():
        pytest.skip(f"cannot mount an overlay in a new mount namespace: {native.failed()['ovl_mount']}")
    assert native.ran == ["upper_call"]
    traced = trace([str(build_program("attack_overlay"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mmap", ("exec-written",))]
    assert parse_output(traced.stdout).failed()["upper_rx_mmap"] == "EACCES"


def test_odd_arguments_neither_crash_nor_stall_the_tracer(build_program, parse_output, tmp_path):
    """Memory calls with absurd arguments on both ABIs: every one returns
    what the kernel says (or EACCES where strict refuses it) and the tracer
    keeps going."""
    native = _native(build_program, parse_output, "attack_odd_args")
    traced = trace([str(build_program("attack_odd_args"))], tmp_path, *STRICT)
    assert traced.returncode == 0, traced.stderr
    assert "internal error" not in traced.stderr and "Traceback" not in traced.stderr
    out = parse_output(traced.stdout)
    assert out.done == 1 and out.count == native.count and out.ran == []
    for label, err in native.failed().items():
        assert out.failed().get(label) in (err, "EACCES"), label
    assert all(event["verdict"] == "denied" for event in traced.events)


def _running(binary: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(entry, "exe").resolve() == binary.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_killing_the_tracer_kills_the_tree(build_program, parse_output, tmp_path):
    """The program SIGKILLs trampwatch (its parent) and keeps trying the
    JIT sequence: PTRACE_O_EXITKILL takes the whole tree down with it."""
    binary = build_program("attack_kill_tracer")
    assert _native(build_program, parse_output, "attack_kill_tracer").ran == ["after_kill_call"]
    traced = trace([str(binary), "kill"], tmp_path, *STRICT, timeout=60)
    assert traced.returncode == -9
    assert parse_output(traced.stdout).ran == []
    assert _running(binary) == []


def test_shmdt_detaches_the_segment_by_its_base(build_program, parse_output, tmp_path):
    """shmdt(A) after munmap of the segment's first page still detaches the
    rest; a MAP_GROWSDOWN region grown into that gap must not be judged as
    the clean read-only segment page the model kept there."""
    native = _native(build_program, parse_output, "attack_shmdt_gap")
    assert native.maps["after_shmdt"] is None and native.ran == ["grown_call"]
    traced = trace([str(build_program("attack_shmdt_gap"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed()["grown_rx_mprotect"] == "EACCES"


def test_forked_child_space_comes_from_its_maps(build_program, parse_output, tmp_path):
    """File pages marked MADV_DONTFORK are not in the child; a MAP_GROWSDOWN
    region the child grows into that gap must not be judged as the parent's
    clean file page."""
    native = _native(build_program, parse_output, "attack_dontfork_gap")
    assert native.maps["child_file"] is None and native.ran == ["child_call"]
    traced = trace([str(build_program("attack_dontfork_gap"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed()["child_rx_mprotect"] == "EACCES"


def test_sealed_memfd_execveat_and_binfmt_misc_are_exec_written(build_program, parse_output, tmp_path):
    """Three routes with no write-then-mmap of a named file: a memfd sealed
    against writing before it is mapped R-X, a copy of the program run by
    execveat(AT_EMPTY_PATH) on a memfd, and a copy registered as a private
    binfmt_misc interpreter that the kernel runs for an empty x.twbin."""
    native = _native(build_program, parse_output, "attack_exec_routes")
    routes = ["seal", "execveat", "binfmt"]
    binfmt_failed = {label: err for label, err in native.failed().items() if label.startswith("binfmt_")}
    if binfmt_failed:
        # binfmt_misc has no private instance before Linux 6.7, nor in every
        # root (a chroot): the route cannot run natively here.
        print(f"binfmt route not run: it fails natively here: {binfmt_failed}")
        routes.remove("binfmt")
    assert native.ran == [f"{route}_call" for route in routes], native.failed()
    traced = trace([str(build_program("attack_exec_routes"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    expected = [("mmap", ("exec-written", "exec-unlinked")), ("exec", ("exec-written", "exec-unlinked")),
                ("exec", ("exec-written",))]
    assert shape(traced.events) == expected[:len(routes)]
    out = parse_output(traced.stdout)
    assert out.failed()["seal_rx_mmap"] == "EACCES"
    assert all(out.children[f"{route}_child"] == "signal=SIGKILL" for route in routes[1:])


def test_fuse_file_served_by_the_tree_is_written(build_program, parse_output, tmp_path):
    """A FUSE filesystem the program serves itself hands the kernel a page of
    code with no write(2) and attributes from 1970: a file on a filesystem
    mounted during the run counts as written (its superblock is new)."""
    native = _native(build_program, parse_output, "attack_fuse")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE in a new mount namespace: {native.failed()['fuse_mount']}")
    assert native.ran == ["fuse_call"]
    traced = trace([str(build_program("attack_fuse"))], tmp_path, *STRICT, timeout=60)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mmap", ("exec-written",))]
    assert parse_output(traced.stdout).failed()["fuse_rx_mmap"] == "EACCES"


def test_a_received_mem_descriptor_is_judged_before_a_sibling_can_use_it(build_program, parse_output,
                                                                          mem_fd_server, tmp_path):  # noqa: F811
    """A sibling spins writing through the number a received /proc/PID/mem
    descriptor gets. The receive runs with its siblings held (as opens do),
    made non-blocking so a silent peer cannot stall them: the descriptor is
    closed before any sibling runs again."""
    program = str(build_program("attack_recv_race"))
    done = subprocess.run([program, mem_fd_server], capture_output=True, text=True, timeout=120)
    assert parse_output(done.stdout).ran == ["race_call"]
    traced = trace([program, mem_fd_server, "300"], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    out = parse_output(traced.stdout)
    assert out.count == 300 and out.failed()["race_recv"] == "EACCES"
    assert {shape_ for shape_ in shape(traced.events)} == {("recvmsg", ("foreign-write",))}


def test_a_blocking_receive_with_siblings_waits_and_gets_its_descriptor(tmp_path):
    """A thread blocks in recvmsg until the main thread, which opens files for
    writing meanwhile (holds of its own), sends it a descriptor: the receive
    waits unheld, then gets the data and the descriptor."""
    script = ("import os, socket, threading, time\n"
              "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "got = []\n"
              "def recv():\n"
              "    msg, fds, _, _ = socket.recv_fds(b, 16, 1)\n"
              "    got.append((msg, os.readlink(f'/proc/self/fd/{fds[0]}')))\n"
              "t = threading.Thread(target=recv); t.start()\n"
              "for i in range(20):\n"
              "    open(os.devnull, 'w').close(); time.sleep(0.01)\n"
              "socket.send_fds(a, [b'hello'], [os.open('/etc/hostname', os.O_RDONLY)])\n"
              "t.join(); print(got[0][0].decode(), got[0][1])\n")
    traced = trace(["/usr/bin/python3", "-c", script], tmp_path, *STRICT, timeout=60)
    assert (traced.returncode, traced.stdout) == (0, "hello /etc/hostname\n"), traced.stderr
    assert traced.events == []


def test_a_signal_interrupts_a_held_receive_as_it_would_natively(tmp_path):
    """Python's handlers have no SA_RESTART: a signal must end a blocking
    recvmsg with EINTR (the handler's exception surfaces), also while the
    receive waits unheld for data in the tracer's place."""
    script = ("import signal, socket, threading, time\n"
              "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n"
              "def alarm(*_):\n"
              "    raise TimeoutError\n"
              "signal.signal(signal.SIGALRM, alarm); signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
              "try:\n"
              "    socket.recv_fds(b, 16, 1)\n"
              "except TimeoutError:\n"
              "    print('interrupted')\n")
    traced = trace(["/usr/bin/python3", "-c", script], tmp_path, *STRICT, timeout=60)
    assert (traced.returncode, traced.stdout) == (0, "interrupted\n"), traced.stderr


def test_a_memory_call_waiting_on_its_own_process_does_not_deadlock(build_program, parse_output, tmp_path):
    """An mmap with MAP_POPULATE of a FUSE file waits in the kernel for the
    server thread, which opens a file for writing and makes a memory call of
    its own before it answers. The open's hold cannot stop the main thread
    (asleep in the kernel, it stops before its next instruction anyway): the
    opener goes on after HOLD_PATIENCE. The memory call waits for the mmap
    (one call per address space at a time) until STALL_PATIENCE, then is
    judged past it, and the summary says so."""
    native = _native(build_program, parse_output, "attack_fuse", "populate")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE in a new mount namespace: {native.failed()['fuse_mount']}")
    assert native.count == 1 and native.done == 1
    traced = trace([str(build_program("attack_fuse")), "populate"], tmp_path, *STRICT, timeout=60)
    out = parse_output(traced.stdout)
    assert (traced.returncode, out.count, out.done) == (0, 1, 1), traced.stderr
    assert traced.events == []
    assert "memory calls stalled in the kernel: 1" in traced.stderr
    assert traced.summary["stalled"] == 1


def test_calls_judged_past_a_stalled_call_see_its_range_as_unknown(build_program, parse_output, tmp_path):
    """While a MAP_FIXED|MAP_POPULATE mmap of served code over a clean page
    of the program stalls (the server answers after 3 s), another thread
    mprotects that page R-X. Judged past the stalled call, it must not see
    the clean page the model remembers: the range is re-read from the
    kernel with unknown history (w-to-x)."""
    native = _native(build_program, parse_output, "attack_fuse", "overtake")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE in a new mount namespace: {native.failed()['fuse_mount']}")
    assert native.ran == ["overtake_call"]
    traced = trace([str(build_program("attack_fuse")), "overtake"], tmp_path, *STRICT, timeout=60)
    _blocked(traced, parse_output)
    assert [e["syscall"] for e in traced.events] == ["mprotect"]
    assert "w-to-x" in traced.events[0]["categories"]
    assert parse_output(traced.stdout).failed()["overtake_rx_mprotect"] == "EACCES"


def test_process_vm_writev_into_a_traced_process(build_program, parse_output, tmp_path):
    """process_vm_writev respects page protections (no write into r-x text,
    natively EFAULT), and what it writes into a writable page of another
    traced process makes that page's later R-X w-to-x like any write."""
    native = _native(build_program, parse_output, "attack_pvm")
    assert native.failed() == {"pvm_rx": "EFAULT"} and native.ran == ["pvm_rw_call"]
    traced = trace([str(build_program("attack_pvm"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed() == {"pvm_rx": "EFAULT", "pvm_rw_mprotect": "EACCES"}


def test_a_memory_call_waiting_on_userfaultfd_does_not_deadlock(build_program, parse_output, tmp_path):
    """An i386 old_mmap whose argument block is a userfaultfd page not yet
    filled waits for the server thread, which maps memory before it fills
    the page. Under a policy that allows userfaultfd (default, enforce), the
    held server goes once the call is reported `blocked` (BLOCKED_PATIENCE,
    logged), and its call is judged past the stalled one after STALL_PATIENCE."""
    native = _native(build_program, parse_output, "attack_uffd_stall")
    if "uffd_create" in native.failed():
        pytest.skip(f"userfaultfd is not available: {native.failed()['uffd_create']}")
    assert native.count == 1
    traced = trace([str(build_program("attack_uffd_stall"))], tmp_path, "--mode", "enforce", timeout=60)
    out = parse_output(traced.stdout)
    assert (traced.returncode, out.count, out.done) == (0, 1, 1), traced.stderr
    assert shape(traced.events) == [("userfaultfd", ("opaque",)), ("blocked", ("opaque",))]
    blocked = traced.events[1]
    assert blocked["verdict"] == "logged" and blocked["detail"]["facility"] == "blocked-mmap", blocked
    assert "memory calls stalled in the kernel: 1" in traced.stderr


def test_a_mapping_the_kernel_keeps_from_children_is_not_in_the_childs_model(build_program, parse_output,
                                                                           tmp_path):
    """A perf ring buffer is never copied into a forked child (the kernel
    marks it so, no madvise asked): the child's model must not keep it, or a
    MAP_GROWSDOWN region the child grows into that gap is judged as the
    parent's clean read-only ring page."""
    program = str(build_program("attack_perf_gap"))
    done = subprocess.run([program], capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.skip(f"perf events cannot be opened here: {done.stdout.strip()}")
    native = parse_output(done.stdout)
    assert native.maps["child_ring"] is None and native.ran == ["child_call"]
    traced = trace([program], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed()["child_rx_mprotect"] == "EACCES"


def test_read_only_mmap_of_a_swapped_descriptor_is_judged_by_the_object_mapped(build_program, parse_output,
                                                                               tmp_path):
    """A thread dup2s a memfd holding code and a clean file over one
    descriptor while main maps it R-- private (no exec, not shared-writable)
    and mprotects it R-X whenever the kernel mapped the memfd. The model must
    hold the object the kernel mapped, not the one named at entry."""
    native = _native(build_program, parse_output, "attack_ro_swap", "mprotect", "20000")
    assert native.ran == ["swapped_call"]
    traced = trace([str(build_program("attack_ro_swap")), "mprotect", "3000"], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    assert parse_output(traced.stdout).count == len(traced.events)
    assert {shape_ for shape_ in shape(traced.events)} == {("mprotect", ("exec-written", "exec-unlinked"))}


def test_forked_copy_is_not_vouched_by_a_swapped_descriptor(build_program, parse_output, tmp_path):
    """A thread dup2s a perf event and a clean file over one descriptor while
    main maps it R-- shared; when the kernel mapped the perf ring (kept out
    of children), the thread is joined and main forks: the child's gap must
    not be the clean file page the entry-time look saw."""
    native = _native(build_program, parse_output, "attack_ro_swap", "fork", "20")
    if native.done == 0:
        pytest.skip("perf_event_open is refused here")
    assert native.count > 0 and len(native.ran) == native.count
    traced = trace([str(build_program("attack_ro_swap")), "fork", "30"], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    assert len(traced.events) == parse_output(traced.stdout).count > 0
    assert {shape_ for shape_ in shape(traced.events)} == {("mprotect", ("w-to-x", "anon-exec"))}


@pytest.fixture
def loop_mounted_file(tmp_path):
    """An ext2 image mounted through a loop device before the run, holding
    `code` (a page of nops): (image, file). Skips where it cannot be mounted."""
    image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(4 << 20)
    made = subprocess.run(["mkfs.ext2", "-q", str(image)], capture_output=True, text=True)
    mounted = made
    if made.returncode == 0:
        mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)],
                                 capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount an ext2 image through a loop device: {mounted.stderr.strip()}")
    try:
        (mount / "code").write_bytes(b"\x90" * 4096)
        subprocess.run(["sync"], check=True)
        yield image, mount / "code"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_file_rewritten_through_its_loop_image_is_written(build_program, parse_output, loop_mounted_file,
                                                           tmp_path):
    """A file on a loop-mounted filesystem older than the run, whose block
    the program rewrites with code through the image file (its own inode
    and filesystem never change), then maps R-X: the image changed during
    the run, so the file counts as written (exec-written)."""
    image, file = loop_mounted_file
    program = str(build_program("attack_loop_image"))
    native = _native(build_program, parse_output, "attack_loop_image", str(image), str(file))
    assert native.ran == ["image_call"]
    file.write_bytes(b"\x90" * 4096)
    subprocess.run(["sync"], check=True)
    traced = trace([program, str(image), str(file)], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mmap", ("exec-written",))]
    assert parse_output(traced.stdout).failed()["file_rx_mmap"] == "EACCES"


@pytest.mark.parametrize("abi", ["x86_64", "m32"])
def test_program_break_moved_by_prctl_is_taken_from_the_kernel(build_program, parse_output, tmp_path, abi):
    """prctl(PR_SET_MM, PR_SET_MM_MAP) moves the kernel's program break over
    a clean R-X page of the program's file (no memory call); brk() below it
    then unmaps that page, a MAP_GROWSDOWN region grows into the gap, and
    the grown page is made R-X. strict refuses PR_SET_MM (opaque, EPERM, on
    either ABI); audit lets it run and judges the brk's result from the
    kernel's maps, so the mprotect is w-to-x, not a clean file page."""
    args = [str(build_program("attack_prctl_brk"))] + (["m32"] if abi == "m32" else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    native = parse_output(done.stdout)
    if "move_prctl" in native.failed():
        pytest.skip(f"prctl(PR_SET_MM_MAP) is refused here: {native.failed()['move_prctl']}")
    assert native.maps["after_cut"] is None and native.ran == ["grown_call"]
    traced = trace(args, tmp_path, *STRICT)
    out = parse_output(traced.stdout)
    assert out.ran == [] and out.done == 1, traced.stdout
    assert shape(traced.events) == [("prctl", ("opaque",))]
    assert traced.events[0]["verdict"] == "denied" and traced.events[0]["result"] == -errno.EPERM
    assert out.failed()["move_prctl"] == "EPERM"
    audited = trace(args, tmp_path, "--mode", "audit")
    assert parse_output(audited.stdout).ran == ["grown_call"]
    assert shape(audited.events) == [("prctl", ("opaque",)), ("mprotect", ("w-to-x", "anon-exec"))]
    assert {event["verdict"] for event in audited.events} == {"logged"}


def _clean_dir(tmp_path: Path, name: str) -> Path:
    """A directory holding `clean`, a file made before the run."""
    where = tmp_path / name
    where.mkdir()
    (where / "clean").write_bytes(b"\x90" * 4096)
    return where


def test_file_routes_by_rename_link_copy_and_reopen_are_written(build_program, parse_output, tmp_path):
    """Code written into a file reaches an R-X mapping or an exec under
    another name or through another object: renamed over a clean file
    (rename, RENAME_EXCHANGE), a hard link, FICLONE, sendfile, fallocate
    INSERT/COLLAPSE_RANGE, an O_PATH execveat; memory moved by
    MREMAP_DONTUNMAP; shared anonymous memory and a System V segment
    reopened through /proc/self/map_files. Written history follows the
    inode (or the region), so each is refused."""
    program = str(build_program("attack_file_routes"))
    done = subprocess.run([program, str(_clean_dir(tmp_path, "native"))], capture_output=True, text=True,
                          timeout=120)
    native = parse_output(done.stdout)
    routes = ["rename", "exchange", "link", "ficlone", "sendfile", "insert", "dontunmap", "map_files",
              "shm_files", "opath"]
    unsupported = {route for route in routes
                   for label, err in native.failed().items() if label.startswith(route + "_")}
    assert unsupported <= {"ficlone", "insert"}, native.failed()  # filesystems without reflinks/ranges
    routes = [route for route in routes if route not in unsupported]
    assert native.ran == [f"{route}_call" for route in routes]
    traced = trace([program, str(_clean_dir(tmp_path, "traced"))], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    written = ("mmap", ("exec-written",))
    expected = {"rename": written, "exchange": written, "link": written, "ficlone": written,
                "sendfile": written, "insert": written, "dontunmap": ("mprotect", ("w-to-x", "anon-exec")),
                "map_files": ("mmap", ("anon-exec",)),
                # The segment's own file is the segment: its read-write attach is still there.
                "shm_files": ("mmap", ("dual-map", "exec-written", "exec-unlinked")),
                "opath": ("exec", ("exec-written",))}
    assert shape(traced.events) == [expected[route] for route in routes]
    out = parse_output(traced.stdout)
    assert out.children["opath_child"] == "signal=SIGKILL"
    for route in routes:
        if route != "opath":
            assert out.failed()[f"{route}_rx_{'mprotect' if route == 'dontunmap' else 'mmap'}"] == "EACCES"
    audited = trace([program, str(_clean_dir(tmp_path, "audited"))], tmp_path, "--mode", "audit")
    assert parse_output(audited.stdout).ran == [f"{route}_call" for route in routes]
    assert shape(audited.events) == [expected[route] for route in routes]


@pytest.mark.parametrize("abi", ["x86_64", "m32"])
def test_io_destroy_unmapping_what_lies_where_its_ring_was(build_program, parse_output, tmp_path, abi):
    """io_destroy unmaps the range its context's ring was moved to, whatever
    is mapped there by then: a clean R-X page of the program's file put in
    the ring's place vanishes with no munmap, a MAP_GROWSDOWN region grows
    into the gap, and the grown page is made R-X. io_destroy (either ABI) is
    followed at its exit by a look at the kernel's maps: w-to-x."""
    args = [str(build_program("attack_aio_gap"))] + (["m32"] if abi == "m32" else [])
    native = parse_output(subprocess.run(args, capture_output=True, text=True, timeout=120).stdout)
    if "ring_io_setup" in native.failed():
        pytest.skip(f"io_setup is refused here: {native.failed()['ring_io_setup']}")
    assert native.maps["after_cut"] is None and native.ran == ["grown_call"]
    traced = trace(args, tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed()["grown_rx_mprotect"] == "EACCES"
    audited = trace(args, tmp_path, "--mode", "audit")
    assert parse_output(audited.stdout).ran == ["grown_call"]
    assert shape(audited.events) == [("mprotect", ("w-to-x", "anon-exec"))]


@pytest.mark.parametrize("abi", ["x86_64", "m32"])
def test_mremap_of_unseen_pages_over_a_known_page(build_program, parse_output, tmp_path, abi):
    """Pages no call made (a MAP_GROWSDOWN region's growth, holding written
    code) are moved by mremap(MREMAP_FIXED) over a clean R-X page of the
    program's file, then made R-X. The model must drop what it held at the
    target and take the moved pages from the kernel (unknown history)."""
    args = [str(build_program("attack_mremap_unseen"))] + (["m32"] if abi == "m32" else [])
    native = parse_output(subprocess.run(args, capture_output=True, text=True, timeout=120).stdout)
    assert native.maps["moved"].perms == "rw-p" and native.ran == ["moved_call"]
    traced = trace(args, tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert parse_output(traced.stdout).failed()["moved_rx_mprotect"] == "EACCES"
    audited = trace(args, tmp_path, "--mode", "audit")
    assert parse_output(audited.stdout).ran == ["moved_call"]
    assert shape(audited.events) == [("mprotect", ("w-to-x", "anon-exec"))]


@pytest.mark.parametrize("abi", ["x86_64", "m32"])
def test_kvm_guest_running_written_code_is_opaque(build_program, parse_output, tmp_path, abi):
    """A KVM guest runs code the program wrote into read-write memory with no
    executable mapping at all (real mode: mov $42, %ax; hlt). KVM_CREATE_VM
    (a register value, either ABI) is `opaque`: strict refuses it (EPERM),
    audit reports it."""
    args = [str(build_program("attack_kvm"))] + (["m32"] if abi == "m32" else [])
    native = parse_output(subprocess.run(args, capture_output=True, text=True, timeout=120).stdout)
    if native.failed():
        pytest.skip(f"no KVM here: {native.failed()}")
    assert native.ran == ["kvm_call"]
    traced = trace(args, tmp_path, *STRICT)
    out = parse_output(traced.stdout)
    assert out.ran == [] and out.done == 1, traced.stdout
    assert shape(traced.events) == [("ioctl", ("opaque",))]
    assert traced.events[0]["verdict"] == "denied" and traced.events[0]["result"] == -errno.EPERM
    assert traced.events[0]["detail"]["facility"] == "kvm" and out.failed() == {"kvm_create_vm": "EPERM"}
    audited = trace(args, tmp_path, "--mode", "audit")
    assert parse_output(audited.stdout).ran == ["kvm_call"]
    assert shape(audited.events) == [("ioctl", ("opaque",))]


def test_code_for_the_kernel_to_run_is_opaque(build_program, parse_output, tmp_path):
    """A module image (init_module, finit_module of a file the program wrote)
    or a kexec image is code the kernel would run for the tree: `opaque`,
    refused under strict before the kernel looks at it (EPERM, where
    natively the invalid images get ENOEXEC/EINVAL/EBADF, or ENOSYS on a
    kernel without modules or kexec, like this host's)."""
    program = str(build_program("attack_kernel_code"))
    native = parse_output(subprocess.run([program], capture_output=True, text=True, timeout=60).stdout)
    labels = ["module_init", "module_finit", "kexec_load", "kexec_file"]
    assert set(native.failed()) == set(labels) and "EPERM" not in native.failed().values()
    traced = trace([program], tmp_path, *STRICT)
    out = parse_output(traced.stdout)
    assert out.done == 1 and out.failed() == dict.fromkeys(labels, "EPERM")
    assert shape(traced.events) == [(name, ("opaque",)) for name in
                                    ("init_module", "finit_module", "kexec_load", "kexec_file_load")]
    assert {(e["verdict"], e["result"]) for e in traced.events} == {("denied", -errno.EPERM)}


def test_x32_numbers_are_judged_as_the_x86_64_calls_they_are(build_program, parse_output, tmp_path):
    """mprotect R-X of written memory and an RWX mmap spelled with the x32
    bit (0x40000000 | nr): the filter stops them (libseccomp's x32 arch); the
    tracer must name and judge them, not pass them on. On a kernel without
    x32 (this host's) they fail ENOSYS natively; with it the code would run."""
    program = str(build_program("attack_x32"))
    native = parse_output(subprocess.run([program], capture_output=True, text=True, timeout=60).stdout)
    assert native.failed() in ({"x32_rx_mprotect": "ENOSYS", "x32_wx_mmap": "ENOSYS"}, {})
    traced = trace([program], tmp_path, *STRICT_TRACED)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec")), ("mmap", ("wx-map", "anon-exec"))]
    assert parse_output(traced.stdout).failed() == {"x32_rx_mprotect": "EACCES", "x32_wx_mmap": "EACCES"}


@pytest.mark.parametrize("how", ["secret", "race", "picked"])
def test_i386_ipc_shmat_address_comes_from_the_kernel(how, build_program, parse_output, tmp_path):
    """i386 ipc(SHMAT) (gcc -m32) has the kernel store the attach address in
    the program's memory: memfd_secret memory the tracer cannot read, a slot
    a second thread keeps rewriting, or an address the program picked
    (SHM_RND, SHM_EXEC). The segment is attached read+write over a clean
    read+execute file page, written, then made read+execute: the attach is
    placed where the kernel's maps show it, so that is w-to-x of the segment
    and the report names the segment at the kernel's address."""
    args = [how, *(["300"] if how == "race" else [])]
    native = _native(build_program, parse_output, "attack_ipc_shmat", *args)
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    assert native.ran == {"secret": ["secret_call"], "race": ["race_call"],
                          "picked": ["picked_exec_call", "picked_call"]}[how]
    traced = trace([str(build_program("attack_ipc_shmat")), *args], tmp_path, *STRICT, timeout=300)
    assert traced.returncode == 0, traced.stderr
    _blocked(traced, parse_output)
    out = parse_output(traced.stdout)
    assert out.done == 1
    refused = [e for e in traced.events if e["syscall"] == "mprotect"]
    assert refused and all("w-to-x" in e["categories"] and e["backing"]["kind"] == "shm" for e in refused)
    if how == "race":
        assert out.count == 0 and len(refused) == 300
        return
    attached = out.steps[f"{how}_shmat"].rc
    assert [int(e["addr"], 16) for e in refused] == [attached]
    assert out.failed()[f"{how}_rx_mprotect"] == "EACCES"
    if how == "picked":
        # SHM_EXEC: refused at entry, reported at the page the kernel would attach (SHM_RND rounds down).
        exec_attach = [e for e in traced.events if e["syscall"] == "shmat"]
        assert [e["categories"] for e in exec_attach] == [["wx-map", "shm-exec"]]
        assert int(exec_attach[0]["addr"], 16) == attached
        assert out.failed()["picked_exec_shmat"] == "EACCES"


def test_i386_ipc_shmat_nothing_places_leaves_unknown_history(build_program, parse_output, tmp_path):
    """An ipc(SHMAT) over an equal attach of its own segment, its address slot
    in memfd_secret memory: neither the maps nor the slot say which attach is
    new, so the whole space is taken from the maps with unknown (possibly
    written) history (fail closed): a read-only page of the program's file
    made read+execute afterwards is refused as `w-to-x`."""
    native = _native(build_program, parse_output, "attack_ipc_shmat", "replaced")
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    assert native.failed() == {} and native.steps["replaced_shmat"].ok
    traced = trace([str(build_program("attack_ipc_shmat")), "replaced"], tmp_path, *STRICT)
    assert traced.returncode == 0, traced.stderr
    out = parse_output(traced.stdout)
    assert out.steps["replaced_shmat"].rc == out.steps["replaced_first_shmat"].rc
    assert out.failed() == {"replaced_clean_mprotect": "EACCES"}
    assert [(e["syscall"], e["backing"]["kind"], "w-to-x" in e["categories"], e["verdict"])
            for e in traced.events] == [("mprotect", "file", True, "denied")]
