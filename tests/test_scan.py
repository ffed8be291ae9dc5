"""`scan` on compiled fixtures: each finding checked against what the kernel
or ld.so really does with the file, and the walk against awkward trees."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tracer import scan
from tracer.abi import READ_IMPLIES_EXEC
from tracer.categories import Category
from tracer.scan import ScanResult, ScanSummary, findings_for, scan_paths
from tracer.sources import procfs

# The fixture programs write one byte when they are running, then pause: a
# test reads that byte before looking at them, because exec has not finished
# setting up the new image (personality, mappings) when Popen returns.
START_I386 = """
    .section .rodata
ready: .ascii "r"
    .text
    .globl _start
_start:
    movl $4, %eax           # write(1, "r", 1)
    movl $1, %ebx
    movl $ready, %ecx
    movl $1, %edx
    int $0x80
    movl $29, %eax          # pause()
    int $0x80
    movl $1, %eax           # exit(0)
    xorl %ebx, %ebx
    int $0x80
"""

START_X86_64 = """
    .section .rodata
ready: .ascii "r"
    .text
    .globl _start
_start:
    movl $1, %eax           # write(1, "r", 1)
    movl $1, %edi
    leaq ready(%rip), %rsi
    movl $1, %edx
    syscall
    movl $34, %eax          # pause()
    syscall
    movl $60, %eax          # exit(0)
    xorl %edi, %edi
    syscall
"""

# An assembler source without a .note.GNU-stack section: the linker then
# writes no PT_GNU_STACK header at all.
NO_NOTE_LIBRARY = """
    .text
    .globl tw_nostack
    .type tw_nostack, @function
tw_nostack:
    ret
    .size tw_nostack, .-tw_nostack
"""

PAUSING_MAIN = '#include <unistd.h>\nint main(void) { write(1, "r", 1); pause(); return 0; }\n'

WX_PROGRAM = (
    '__asm__(".section .wxtext,\\"awx\\",@progbits\\n.globl tw_wx\\ntw_wx: .byte 0xc3\\n.previous");\n'
    + PAUSING_MAIN
)

TEXTREL_I386 = "int counter;\nint bump(void) { return ++counter; }\n"
TEXTREL_X86_64 = 'int counter;\n__asm__(".text\\n.globl tw_addr\\ntw_addr: .quad counter\\n");\n'

CLOSURE_PROGRAM = """
#include <stddef.h>
void *ffi_closure_alloc(size_t size, void **code);
int main(void) { void *code; return ffi_closure_alloc(64, &code) == NULL; }
"""

MPROTECT_PROGRAM = """
#include <sys/mman.h>
int main(void) { return mprotect(0, 0, PROT_READ); }
"""


def _gcc(*args: str) -> None:
    result = subprocess.run(["gcc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"gcc {' '.join(args)} failed:\n{result.stderr}")


def _has_multilib() -> bool:
    probe = subprocess.run(
        ["gcc", "-m32", "-x", "c", "-o", os.devnull, "-"],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Compile every fixture once; return name -> path."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the scan fixtures")
    d = tmp_path_factory.mktemp("scan-fixtures")
    sources = {
        "start32.s": START_I386,
        "start64.s": START_X86_64,
        "nonote.s": NO_NOTE_LIBRARY,
        "pause.c": PAUSING_MAIN,
        "wx.c": WX_PROGRAM,
        "textrel32.c": TEXTREL_I386,
        "textrel64.c": TEXTREL_X86_64,
        "closure.c": CLOSURE_PROGRAM,
        "mprotect.c": MPROTECT_PROGRAM,
    }
    for name, text in sources.items():
        (d / name).write_text(text)
    out = {name: str(d / name) for name in ("clean", "execstack", "nostack_lib", "nostack64", "wx")}
    out |= {name: str(d / name) for name in ("textrel64", "closure", "mprotect")}
    _gcc("-o", out["clean"], str(d / "pause.c"))
    _gcc("-Wl,-z,execstack", "-o", out["execstack"], str(d / "pause.c"))
    _gcc("-shared", "-nostdlib", "-o", out["nostack_lib"], str(d / "nonote.s"))
    _gcc("-nostdlib", "-static", "-o", out["nostack64"], str(d / "start64.s"))
    _gcc("-o", out["wx"], str(d / "wx.c"))
    _gcc("-shared", "-fPIC", "-Wl,-z,notext", "-o", out["textrel64"], str(d / "textrel64.c"))
    _gcc("-o", out["closure"], str(d / "closure.c"), "-lffi")
    _gcc("-o", out["mprotect"], str(d / "mprotect.c"))
    if _has_multilib():
        out["nostack32"] = str(d / "nostack32")
        out["textrel32"] = str(d / "textrel32.so")
        _gcc("-m32", "-nostdlib", "-static", "-o", out["nostack32"], str(d / "start32.s"))
        _gcc("-m32", "-shared", "-fno-pic", "-o", out["textrel32"], str(d / "textrel32.c"))
    return out


def _needs(fixtures: dict[str, str], name: str) -> str:
    if name not in fixtures:
        pytest.skip("gcc -m32 cannot link (gcc-multilib missing): no i386 fixtures")
    return fixtures[name]


def scan_one(path: str) -> ScanResult:
    (result,) = scan_paths([path])
    return result


def kinds(result: ScanResult) -> set[str]:
    return {finding.kind for finding in result.findings}


@contextmanager
def running(path: str) -> Iterator[int]:
    """Run a fixture program; yield its pid once it has signalled it runs."""
    proc = subprocess.Popen([path], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(1) == b"r", f"{path} did not start"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _stack_is_executable(pid: int) -> bool:
    return any(m.path == "[stack]" and m.prot & 4 for m in procfs.read_maps(pid))


def test_clean_program_has_no_findings(fixtures: dict[str, str]) -> None:
    result = scan_one(fixtures["clean"])
    assert result.error is None and result.info is not None
    assert result.findings == ()
    with running(fixtures["clean"]) as pid:
        assert not _stack_is_executable(pid)


def test_execstack_program_gets_an_executable_stack(fixtures: dict[str, str]) -> None:
    result = scan_one(fixtures["execstack"])
    assert kinds(result) == {scan.EXECSTACK}
    assert result.categories == (Category.EXECSTACK,)
    with running(fixtures["execstack"]) as pid:
        assert _stack_is_executable(pid)


def test_library_without_stack_header_makes_ld_so_grant_an_executable_stack(fixtures: dict[str, str]) -> None:
    lib = fixtures["nostack_lib"]
    result = scan_one(lib)
    assert kinds(result) == {scan.EXECSTACK}
    assert "ld.so" in result.findings[0].detail
    # The oracle: load it and look at the stack (or at the refusal of a glibc
    # that no longer grants executable stacks to libraries).
    probe = (
        "import ctypes, sys\n"
        "try:\n"
        "    ctypes.CDLL(sys.argv[1])\n"
        "except OSError as err:\n"
        "    print('refused', err)\n"
        "    sys.exit(0)\n"
        "print(any('[stack]' in l and l.split()[1][2] == 'x' for l in open('/proc/self/maps')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, lib], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "True" or ("refused" in out and "stack" in out), out


def test_i386_program_without_stack_header_triggers_read_implies_exec(fixtures: dict[str, str]) -> None:
    path = _needs(fixtures, "nostack32")
    result = scan_one(path)
    assert kinds(result) == {scan.READ_IMPLIES_EXEC}
    assert result.categories == (Category.READ_IMPLIES_EXEC,)
    with running(path) as pid:
        assert procfs.read_personality(pid) & READ_IMPLIES_EXEC


def test_x86_64_program_without_stack_header_is_only_noted(fixtures: dict[str, str]) -> None:
    result = scan_one(fixtures["nostack64"])
    assert kinds(result) == {scan.NO_GNU_STACK}
    assert result.categories == ()
    with running(fixtures["nostack64"]) as pid:
        assert not procfs.read_personality(pid) & READ_IMPLIES_EXEC
        assert not _stack_is_executable(pid)


def test_wx_segment_is_mapped_writable_and_executable(fixtures: dict[str, str]) -> None:
    path = fixtures["wx"]
    result = scan_one(path)
    assert kinds(result) == {scan.WX_SEGMENT}
    assert result.categories == (Category.WX_MAP,)
    with running(path) as pid:
        assert any(m.path == path and m.prot == 7 for m in procfs.read_maps(pid))


def _readelf_textrel(path: str) -> bool:
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=True).stdout
    return "TEXTREL" in out


@pytest.mark.parametrize("name", ["textrel64", "textrel32"])
def test_text_relocations_map_to_execmod(fixtures: dict[str, str], name: str) -> None:
    path = _needs(fixtures, name)
    assert _readelf_textrel(path)
    result = scan_one(path)
    assert scan.TEXTREL in kinds(result)
    assert Category.EXECMOD in result.categories
    assert not _readelf_textrel(fixtures["clean"]) and scan.TEXTREL not in kinds(scan_one(fixtures["clean"]))


def test_closure_and_memory_api_imports_are_indicators(fixtures: dict[str, str]) -> None:
    closure = scan_one(fixtures["closure"])
    assert kinds(closure) == {scan.CLOSURE_API}
    assert closure.findings[0].detail == "imports ffi_closure_alloc"
    assert closure.categories == ()
    memory = scan_one(fixtures["mprotect"])
    assert kinds(memory) == {scan.MEMORY_API}
    assert "mprotect" in memory.findings[0].detail


def test_findings_for_skips_relocatable_objects(fixtures: dict[str, str], tmp_path: Path) -> None:
    obj = tmp_path / "x.o"
    (tmp_path / "x.s").write_text(NO_NOTE_LIBRARY)
    _gcc("-c", "-o", str(obj), str(tmp_path / "x.s"))
    result = scan_one(str(obj))
    assert result.info is not None and result.info.e_type == "REL"
    assert findings_for(result.info) == ()


@pytest.fixture
def tree(fixtures: dict[str, str], tmp_path: Path) -> Path:
    """A directory with every awkward entry a walk can meet."""
    root = tmp_path / "tree"
    sub = root / "sub"
    sub.mkdir(parents=True)
    shutil.copy(fixtures["execstack"], root / "execstack")
    shutil.copy(fixtures["clean"], sub / "clean")
    os.link(sub / "clean", sub / "clean-hardlink")
    (sub / "loop").symlink_to("..")
    (root / "link-to-execstack").symlink_to("execstack")
    (root / "dangling").symlink_to("nowhere")
    (root / "selfloop").symlink_to("selfloop")
    (root / "notes.txt").write_text("not an ELF\n")
    data = Path(fixtures["clean"]).read_bytes()
    (root / "truncated").write_bytes(data[:200])
    os.mkfifo(root / "fifo")
    return root


def test_walk_without_following_symlinks(tree: Path) -> None:
    summary = ScanSummary()
    results = list(scan_paths([str(tree)], summary=summary))
    by_path = {Path(r.path).relative_to(tree).as_posix(): r for r in results}
    assert sorted(by_path) == ["execstack", "sub/clean", "truncated"]
    assert by_path["truncated"].error == "truncated" and by_path["truncated"].info is None
    assert kinds(by_path["execstack"]) == {scan.EXECSTACK}
    assert summary.files_seen == 4  # execstack, notes.txt, truncated, sub/clean
    assert (summary.elf, summary.not_elf, summary.directories) == (2, 1, 2)
    assert summary.skipped == {"symlink": 4, "duplicate": 1, "special": 1}
    assert summary.errors == {"truncated": 1}
    assert summary.categories == {Category.EXECSTACK: 1}
    assert summary.elf_with_findings == 1
    assert summary.elapsed > 0 and summary.files_per_second > 0


def test_walk_following_symlinks_survives_the_loop(tree: Path) -> None:
    summary = ScanSummary()
    results = list(scan_paths([str(tree)], follow_symlinks=True, summary=summary))
    paths = sorted(Path(r.path).relative_to(tree).as_posix() for r in results)
    # The dangling link and the link to itself are errors; the loop and the
    # second names of files already seen are duplicates, each inode examined once.
    assert paths == ["dangling", "execstack", "selfloop", "sub/clean", "truncated"]
    assert summary.errors == {"truncated": 1, "vanished": 1, "symlink-loop": 1}
    assert summary.skipped == {"duplicate": 3, "special": 1}
    assert summary.elf == 2


def test_roots_missing_repeated_or_files(tree: Path) -> None:
    summary = ScanSummary()
    execstack = str(tree / "execstack")
    results = list(
        scan_paths([str(tree / "missing"), execstack, str(tree / "link-to-execstack")], summary=summary)
    )
    assert [(r.path, r.error) for r in results] == [(str(tree / "missing"), "vanished"), (execstack, None)]
    assert summary.skipped == {"duplicate": 1}


def test_one_filesystem_stays_on_the_root_device(tree: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tree.stat().st_dev:
        pytest.skip("/dev/shm is not a separate filesystem here: nothing to cross")
    target = shm / f"tw-scan-{os.getpid()}"
    target.mkdir()
    try:
        shutil.copy(tree / "execstack", target / "elsewhere")
        (tree / "mnt").symlink_to(target)
        stay = ScanSummary()
        stayed = [
            r.path for r in scan_paths([str(tree)], follow_symlinks=True, summary=stay, one_filesystem=True)
        ]
        crossed = [r.path for r in scan_paths([str(tree)], follow_symlinks=True)]
    finally:
        shutil.rmtree(target)
    assert str(tree / "mnt" / "elsewhere") in crossed
    assert str(tree / "mnt" / "elsewhere") not in stayed
    assert stay.skipped["other-filesystem"] == 1


def test_summary_elapsed_is_kept_when_the_scan_stops_early(tree: Path) -> None:
    summary = ScanSummary()
    walk = scan_paths([str(tree)], summary=summary)
    next(walk)
    walk.close()
    assert summary.elapsed > 0


def _counts(summary: ScanSummary) -> dict[str, object]:
    """What a summary says about the files, whoever walked them."""
    names = ("files_seen", "directories", "elf", "not_elf", "debug_only", "elf_with_findings",
             "skipped", "errors", "categories", "indicators")
    return {name: getattr(summary, name) for name in names}


def _scan(root: Path, helper: bool) -> tuple[list[ScanResult], ScanSummary]:
    summary = ScanSummary()
    return list(scan_paths([str(root)], summary=summary, helper=helper)), summary


@pytest.fixture
def wide_tree(fixtures: dict[str, str], tmp_path: Path) -> Path:
    """A file at the top, then 24 subtrees of ELF and other files, a hard
    link from the last subtree to the first and one inside a subtree, a
    symlink, a FIFO and a truncated ELF file."""
    root = tmp_path / "wide"
    root.mkdir()
    shutil.copy(fixtures["clean"], root / "a-top")
    for i in range(24):
        inner = root / f"d{i:02}" / "inner"
        inner.mkdir(parents=True)
        shutil.copy(fixtures["execstack" if i % 3 == 0 else "clean"], inner.parent / "prog")
        shutil.copy(fixtures["wx"], inner / "wx")
        (inner / "notes.txt").write_text("not an ELF\n")
    os.link(root / "d00" / "prog", root / "d23" / "inner" / "link-to-d00")
    os.link(root / "d22" / "prog", root / "d22" / "inner" / "link-to-d22")
    (root / "d05" / "to-d06").symlink_to("../d06")
    os.mkfifo(root / "d07" / "fifo")
    (root / "d08" / "truncated").write_bytes(Path(fixtures["clean"]).read_bytes()[:200])
    return root


def test_helper_process_gives_the_same_results_counts_and_order(wide_tree: Path) -> None:
    """Split with a helper process or not: the same results in the same
    order, the same counts (the hard link into the first subtree found in a
    subtree the helper walked is a duplicate either way)."""
    alone, alone_summary = _scan(wide_tree, helper=False)
    split, split_summary = _scan(wide_tree, helper=True)
    assert [r.path for r in split] == [r.path for r in alone]
    assert split == alone
    assert _counts(split_summary) == _counts(alone_summary)
    assert alone_summary.skipped["duplicate"] == 2 and alone_summary.helper_units == 0
    assert split_summary.helper_units > 0 and split_summary.helper_failure is None


def test_helper_process_on_a_system_tree() -> None:
    root = Path("/usr/lib/x86_64-linux-gnu")
    if not root.is_dir():
        pytest.skip(f"{root} is not here: no large tree of libraries to split")
    alone, alone_summary = _scan(root, helper=False)
    split, split_summary = _scan(root, helper=True)
    assert split == alone
    assert _counts(split_summary) == _counts(alone_summary)
    assert split_summary.helper_units > 0


def _only_child() -> int:
    """The one child process of this process."""
    me = str(os.getpid())
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            children.append(int(stat_file.parent.name))
    assert len(children) == 1, children
    return children[0]


def test_a_killed_helper_leaves_no_gap(wide_tree: Path) -> None:
    """The helper is stopped before it is given work, then killed holding
    two subtrees: they are walked again here, and the report is whole."""
    alone, alone_summary = _scan(wide_tree, helper=False)
    summary = ScanSummary()
    walk = scan_paths([str(wide_tree)], summary=summary, helper=True)
    results = [next(walk)]
    assert results[0].path == str(wide_tree / "a-top")  # the top's listing: nothing given yet
    helper = _only_child()
    os.kill(helper, signal.SIGSTOP)
    results.append(next(walk))  # from d00: the last two subtrees have been given
    os.kill(helper, signal.SIGKILL)
    results += walk
    assert results == alone
    assert _counts(summary) == _counts(alone_summary)
    assert (summary.helper_units, summary.redone_units) == (0, 2)
    assert summary.helper_failure is not None and "killed by signal 9" in summary.helper_failure


BIND_MOUNT_SCAN = """
import sys
from tracer.scan import ScanSummary, scan_paths
out = []
for helper in (False, True):
    summary = ScanSummary()
    results = list(scan_paths([sys.argv[1]], summary=summary, helper=helper))
    out.append((results, {k: v for k, v in vars(summary).items() if k not in ("elapsed", "helper_units",
                                                                          "redone_units")}))
print(out[0] == out[1], out[1][1]["skipped"]["duplicate"], summary.redone_units)
"""


def test_a_bind_mount_the_helper_met_again_is_walked_again(wide_tree: Path) -> None:
    """The last subtree (the helper's first) holds a bind mount of the
    first: a directory seen before, so its subtree is walked again here and
    the mount counted as a duplicate, as a walk alone does."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    (wide_tree / "d23" / "mnt").mkdir()
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$1" "$2" && exec "$3" -c "$4" "$5"', "sh", str(wide_tree / "d00"),
               str(wide_tree / "d23" / "mnt"), sys.executable, BIND_MOUNT_SCAN, str(wide_tree)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 and "mount" in done.stderr and "ermission" in done.stderr:
        pytest.skip(f"no bind mount here: {done.stderr.strip()}")
    if done.returncode != 0 and "cannot change root filesystem propagation" in done.stderr:
        # A chroot whose root directory is no mount point: no private mount namespace.
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    same, duplicates, redone = done.stdout.split()
    assert same == "True"
    assert int(duplicates) == 3  # the two hard links and the mount
    assert int(redone) >= 1


def test_cli_output_is_the_same_with_and_without_the_helper(wide_tree: Path) -> None:
    """`trampwatch scan --json --helper` and `--no-helper`: the same records
    in the same order; only the summary's timing differs."""
    outputs = []
    for flag in ("--helper", "--no-helper"):
        done = subprocess.run([sys.executable, "-m", "tracer", "scan", "--json", flag, str(wide_tree)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in done.stdout.splitlines()]
        for record in records:
            record.pop("seconds", None)
            record.pop("files_per_second", None)
            record.pop("time", None)
        outputs.append(records)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 24
