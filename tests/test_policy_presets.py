"""The presets in policies/: each loads cleanly, decides representative events
as its documentation says, and `mdwe` agrees with the kernel's own MDWE."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracer.categories import Category
from tracer.policy import Action, Facts, decide, load_policy_file, preset_names, resolve_policy
from tracer.policy.loader import PRESET_DIR

RWX = frozenset({"read", "write", "exec"})
RX = frozenset({"read", "exec"})
RW = frozenset({"read", "write"})
EXEC = frozenset({"exec"})
NONE: frozenset[str] = frozenset()
WX_CATEGORIES = [c for c in Category if c is not Category.TRAMPFD]
# W^X categories proper: refused by strict's deny-wx (opaque has its own rules).
STRICT_WX_CATEGORIES = [c for c in WX_CATEGORIES if c is not Category.OPAQUE]


def facts(*categories: Category, **changes: object) -> Facts:
    """An event in `categories`: by default an anonymous RWX mmap by /usr/bin/prog."""
    base = Facts(
        categories=categories,
        syscall="mmap",
        exe="/usr/bin/prog",
        comm="prog",
        uid=1000,
        backing_kind="anon",
        object_path=None,
        caller_object="/usr/lib/x86_64-linux-gnu/libc.so.6",
        prot=RWX,
        gained=RWX,
        new_mapping=True,
    )
    return base._replace(**changes)


def verdict(preset: str, event: Facts) -> tuple[Action, str | None, int | None]:
    decision = decide(resolve_policy(preset), event)
    return decision.action, decision.rule, decision.errno


# --- every preset ---------------------------------------------------------------------


def preset_files() -> list[Path]:
    return sorted(PRESET_DIR.glob("*.yaml"))


def test_the_presets_named_in_the_docs_exist() -> None:
    assert preset_names() == ["default", "jit-allowlist", "mdwe", "selinux-strict", "strict"]
    assert [p.stem for p in preset_files()] == preset_names()


@pytest.mark.parametrize("path", preset_files(), ids=lambda p: p.name)
def test_every_preset_loads_without_errors_or_warnings(path: Path) -> None:
    policy = load_policy_file(path)
    assert policy.warnings == ()
    assert policy.name == path.stem
    assert policy.description
    assert all(rule.description for rule in policy.rules)


@pytest.mark.parametrize("name", ["default", "jit-allowlist", "selinux-strict", "strict"])
def test_category_presets_never_judge_an_event_in_no_category(name: str) -> None:
    assert verdict(name, facts()) == (Action.ALLOW, None, None)


def test_mdwe_judges_by_protection_even_in_no_category() -> None:
    # mprotect r-- -> r-x of a file never written: no W^X category, MDWE refuses it.
    file_exec_gain = facts(syscall="mprotect", backing_kind="file", prot=frozenset({"read", "exec"}),
                           gained=frozenset({"exec"}), new_mapping=False)
    assert verdict("mdwe", file_exec_gain) == (Action.DENY, "mdwe-exec-gain", errno.EACCES)
    assert verdict("mdwe", facts(prot=frozenset({"read"}), gained=frozenset({"read"}))) == (
        Action.ALLOW, None, None)


# --- default ------------------------------------------------------------------------------


@pytest.mark.parametrize("category", WX_CATEGORIES, ids=str)
def test_default_logs_every_wx_category(category: Category) -> None:
    assert verdict("default", facts(category)) == (Action.LOG, "log-wx", None)


def test_default_allows_trampfd_unless_something_worse_came_with_it() -> None:
    assert verdict("default", facts(Category.TRAMPFD)) == (Action.ALLOW, "allow-trampfd", None)
    assert verdict("default", facts(Category.ANON_EXEC, Category.TRAMPFD))[0] == Action.LOG


# --- mdwe -------------------------------------------------------------------------------------

MDWE_TABLE = [
    ("mmap rwx anon", facts(Category.WX_MAP, Category.ANON_EXEC), "mdwe-new-wx-mapping"),
    ("mmap2 rwx anon", facts(Category.WX_MAP, syscall="mmap2"), "mdwe-new-wx-mapping"),
    ("shmat SHM_EXEC", facts(Category.SHM_EXEC, syscall="shmat", backing_kind="shm"), "mdwe-new-wx-mapping"),
    (
        "mprotect rw- to r-x",
        facts(Category.W_TO_X, syscall="mprotect", prot=RX, gained=EXEC, new_mapping=False),
        "mdwe-exec-gain",
    ),
    (
        "pkey_mprotect r-- to r-x",
        facts(Category.ANON_EXEC, syscall="pkey_mprotect", prot=RX, gained=EXEC, new_mapping=False),
        "mdwe-exec-gain",
    ),
    (
        "mprotect r-x to rwx",
        facts(Category.WX_PROTECT, syscall="mprotect", gained=frozenset({"write"}), new_mapping=False),
        "mdwe-mprotect-wx",
    ),
    (
        "mprotect rwx to rwx",
        facts(Category.WX_PROTECT, syscall="mprotect", gained=NONE, new_mapping=False),
        "mdwe-mprotect-wx",
    ),
    (
        "mprotect of a stack gaining exec",
        facts(
            Category.EXECSTACK,
            syscall="mprotect",
            backing_kind="stack",
            prot=RX,
            gained=EXEC,
            new_mapping=False,
        ),
        "mdwe-exec-gain",
    ),
    (
        "mprotect r-x to r-x",
        facts(Category.ANON_EXEC, syscall="mprotect", prot=RX, gained=NONE, new_mapping=False),
        None,
    ),
    ("mmap r-x anon", facts(Category.ANON_EXEC, prot=RX, gained=RX), None),
    (
        "dual-map: mmap r-x of a memfd",
        facts(
            Category.DUAL_MAP,
            Category.EXEC_UNLINKED,
            backing_kind="memfd",
            object_path="/memfd:libffi (deleted)",
            prot=RX,
            gained=RX,
        ),
        None,
    ),
    ("mremap of an rwx region", facts(Category.WX_MAP, syscall="mremap"), None),
    ("brk under READ_IMPLIES_EXEC", facts(Category.EXECHEAP, syscall="brk", backing_kind="heap"), None),
    (
        "execstack at exec",
        facts(Category.EXECSTACK, syscall="exec", backing_kind="stack", prot=NONE, gained=NONE),
        None,
    ),
    (
        "foreign write",
        facts(Category.FOREIGN_WRITE, syscall="ptrace", prot=RX, gained=NONE, new_mapping=False),
        None,
    ),
    (
        "personality(READ_IMPLIES_EXEC)",
        facts(Category.READ_IMPLIES_EXEC, syscall="personality", prot=NONE, gained=NONE, new_mapping=False),
        None,
    ),
]


@pytest.mark.parametrize(
    ("event", "rule"), [(e, r) for _, e, r in MDWE_TABLE], ids=[n for n, _, _ in MDWE_TABLE]
)
def test_mdwe_refuses_exactly_write_exec_mappings_and_exec_gains(event: Facts, rule: str | None) -> None:
    if rule is None:
        assert verdict("mdwe", event) == (Action.ALLOW, None, None)
    else:
        assert verdict("mdwe", event) == (Action.DENY, rule, errno.EACCES)


# The kernel as oracle: each scenario runs in a child that turned MDWE on, and
# reports the errno of its last call; the facts are those of that last call.
MDWE_CHILD = textwrap.dedent(
    """\
    import ctypes, json, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.mremap.restype = ctypes.c_void_p
    libc.mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
    libc.syscall.restype = ctypes.c_long
    libc.syscall.argtypes = (ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long, ctypes.c_long)
    R, W, X = 1, 2, 4
    PRIVATE, SHARED, ANON = 0x02, 0x01, 0x20
    PAGE = 4096
    FAILED = ctypes.c_void_p(-1).value

    def mmap(prot, flags=PRIVATE | ANON, fd=-1, length=PAGE):
        addr = libc.mmap(None, length, prot, flags, fd, 0)
        return None if addr == FAILED else addr

    def result(ok):
        return 0 if ok else ctypes.get_errno()

    def memfd():
        fd = os.memfd_create("probe")
        os.ftruncate(fd, PAGE)
        return fd

    # Made before MDWE is on: MDWE never lets a process create these.
    before = mmap(R | W | X)
    to_move = mmap(R | W | X)
    assert libc.prctl(65, 1, 0, 0, 0) == 0, ctypes.get_errno()

    def partial_gain():
        addr = mmap(R | X, length=2 * PAGE)
        libc.mprotect(addr + PAGE, PAGE, R)
        return result(libc.mprotect(addr, 2 * PAGE, R | X) == 0)

    def shmat(flags):
        sid = libc.shmget(0, PAGE, 0o600)
        addr = libc.shmat(sid, None, flags)
        libc.shmctl(sid, 0, None)
        return result(addr != FAILED)

    scenarios = {
        "mmap rwx anon": lambda: result(mmap(R | W | X)),
        "mmap r-x anon": lambda: result(mmap(R | X)),
        "mmap rwx private file": lambda: result(mmap(R | W | X, PRIVATE, memfd())),
        "mmap rwx shared memfd": lambda: result(mmap(R | W | X, SHARED, memfd())),
        "dual-map: memfd rw- then r-x": lambda: (
            lambda fd: result(mmap(R | W, SHARED, fd) and mmap(R | X, SHARED, fd)))(memfd()),
        "mprotect rw- to r-x": lambda: result(libc.mprotect(mmap(R | W), PAGE, R | X) == 0),
        "mprotect r-- to r-x": lambda: result(libc.mprotect(mmap(R), PAGE, R | X) == 0),
        "mprotect --- to --x": lambda: result(libc.mprotect(mmap(0), PAGE, X) == 0),
        "mprotect r-x to r-x": lambda: result(libc.mprotect(mmap(R | X), PAGE, R | X) == 0),
        "mprotect r-x to r--": lambda: result(libc.mprotect(mmap(R | X), PAGE, R) == 0),
        "mprotect r-x to rwx": lambda: result(libc.mprotect(mmap(R | X), PAGE, R | W | X) == 0),
        "mprotect rwx to rwx": lambda: result(libc.mprotect(before, PAGE, R | W | X) == 0),
        "mprotect rwx to r-x": lambda: result(libc.mprotect(before, PAGE, R | X) == 0),
        "mprotect gaining exec on part of the range": partial_gain,
        "pkey_mprotect rw- to r-x": lambda: result(libc.syscall(329, mmap(R | W), PAGE, R | X, -1) == 0),
        "mremap of an rwx region": lambda: result(libc.mremap(to_move, PAGE, 2 * PAGE, 1) != FAILED),
        "shmat SHM_EXEC": lambda: shmat(0o100000),
        "shmat SHM_EXEC|SHM_RDONLY": lambda: shmat(0o100000 | 0o10000),
    }
    print(json.dumps({name: run() for name, run in scenarios.items()}))
    """
)

ANON_CALL = {"syscall": "mmap", "new_mapping": True}
PROTECT = {"syscall": "mprotect", "new_mapping": False}
# Scenario → the facts of its last call. The category only makes the event
# judged: the mdwe preset decides on syscall, protection and gains alone.
MDWE_SCENARIOS: dict[str, dict[str, object]] = {
    "mmap rwx anon": {**ANON_CALL, "prot": RWX, "gained": RWX},
    "mmap r-x anon": {**ANON_CALL, "prot": RX, "gained": RX},
    "mmap rwx private file": {**ANON_CALL, "prot": RWX, "gained": RWX, "backing_kind": "memfd"},
    "mmap rwx shared memfd": {**ANON_CALL, "prot": RWX, "gained": RWX, "backing_kind": "memfd"},
    "dual-map: memfd rw- then r-x": {**ANON_CALL, "prot": RX, "gained": RX, "backing_kind": "memfd"},
    "mprotect rw- to r-x": {**PROTECT, "prot": RX, "gained": EXEC},
    "mprotect r-- to r-x": {**PROTECT, "prot": RX, "gained": EXEC},
    "mprotect --- to --x": {**PROTECT, "prot": EXEC, "gained": EXEC},
    "mprotect r-x to r-x": {**PROTECT, "prot": RX, "gained": NONE},
    "mprotect r-x to r--": {**PROTECT, "prot": frozenset({"read"}), "gained": NONE},
    "mprotect r-x to rwx": {**PROTECT, "prot": RWX, "gained": frozenset({"write"})},
    "mprotect rwx to rwx": {**PROTECT, "prot": RWX, "gained": NONE},
    "mprotect rwx to r-x": {**PROTECT, "prot": RX, "gained": NONE},
    "mprotect gaining exec on part of the range": {**PROTECT, "prot": RX, "gained": EXEC},
    "pkey_mprotect rw- to r-x": {**PROTECT, "syscall": "pkey_mprotect", "prot": RX, "gained": EXEC},
    "mremap of an rwx region": {"syscall": "mremap", "new_mapping": True, "prot": RWX, "gained": NONE},
    "shmat SHM_EXEC": {**ANON_CALL, "syscall": "shmat", "prot": RWX, "gained": RWX, "backing_kind": "shm"},
    "shmat SHM_EXEC|SHM_RDONLY": {
        **ANON_CALL,
        "syscall": "shmat",
        "prot": RX,
        "gained": RX,
        "backing_kind": "shm",
    },
}


@pytest.fixture(scope="module")
def kernel_mdwe_results() -> dict[str, int]:
    probe = subprocess.run(
        [sys.executable, "-c", "import ctypes; print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))"],
        capture_output=True,
        text=True,
        check=True,
    )
    if int(probe.stdout) < 0:
        pytest.skip("PR_GET_MDWE is refused: this kernel has no MDWE (Linux 6.3+) to compare against")
    child = subprocess.run([sys.executable, "-c", MDWE_CHILD], capture_output=True, text=True, check=False)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


@pytest.mark.parametrize("scenario", list(MDWE_SCENARIOS))
def test_mdwe_preset_agrees_with_the_kernel(kernel_mdwe_results: dict[str, int], scenario: str) -> None:
    kernel = kernel_mdwe_results[scenario]
    assert kernel in (0, errno.EACCES), f"{scenario}: unexpected errno {kernel}"
    decision = decide(resolve_policy("mdwe"), facts(Category.ANON_EXEC, **MDWE_SCENARIOS[scenario]))
    if kernel == errno.EACCES:
        assert (decision.action, decision.errno) == (Action.DENY, errno.EACCES), scenario
    else:
        assert decision.action == Action.ALLOW, scenario


def test_the_kernel_oracle_covers_every_scenario(kernel_mdwe_results: dict[str, int]) -> None:
    assert set(kernel_mdwe_results) == set(MDWE_SCENARIOS)
    # Both verdicts occur, so agreement is not agreement with a constant.
    assert set(kernel_mdwe_results.values()) == {0, errno.EACCES}


# --- selinux-strict ------------------------------------------------------------------------

SELINUX_TABLE = [
    ("execstack at exec", facts(Category.EXECSTACK, syscall="exec", backing_kind="stack"), "execstack"),
    (
        "execheap",
        facts(Category.EXECHEAP, Category.ANON_EXEC, syscall="mprotect", backing_kind="heap"),
        "execheap",
    ),
    ("execmod", facts(Category.EXECMOD, Category.W_TO_X, syscall="mprotect", backing_kind="file"), "execmod"),
    ("anon r-x mmap", facts(Category.ANON_EXEC, prot=RX), "execmem"),
    ("shared file W+X", facts(Category.WX_MAP, backing_kind="file"), "execmem"),
    ("mprotect to W+X", facts(Category.WX_PROTECT, syscall="mprotect"), "execmem"),
    ("shmat SHM_EXEC", facts(Category.SHM_EXEC, syscall="shmat", backing_kind="shm"), "execmem"),
    ("anon w-to-x", facts(Category.W_TO_X, syscall="mprotect", prot=RX), "execmem-anon-w-to-x"),
    ("shared anon w-to-x", facts(Category.W_TO_X, backing_kind="shared-anon"), "execmem-anon-w-to-x"),
]
SELINUX_LOGGED = [
    ("file w-to-x", facts(Category.W_TO_X, syscall="mprotect", backing_kind="file")),
    ("memfd dual-map", facts(Category.DUAL_MAP, Category.EXEC_UNLINKED, backing_kind="memfd", prot=RX)),
    ("foreign write", facts(Category.FOREIGN_WRITE, syscall="ptrace")),
    ("read-implies-exec", facts(Category.READ_IMPLIES_EXEC, syscall="personality")),
]


@pytest.mark.parametrize(
    ("event", "rule"), [(e, r) for _, e, r in SELINUX_TABLE], ids=[n for n, _, _ in SELINUX_TABLE]
)
def test_selinux_strict_denies_what_its_permissions_guard(event: Facts, rule: str) -> None:
    assert verdict("selinux-strict", event) == (Action.DENY, rule, errno.EACCES)


@pytest.mark.parametrize("event", [e for _, e in SELINUX_LOGGED], ids=[n for n, _ in SELINUX_LOGGED])
def test_selinux_strict_logs_what_selinux_does_not_check(event: Facts) -> None:
    assert verdict("selinux-strict", event) == (Action.LOG, "log-unchecked", None)


def test_selinux_strict_allows_trampfd() -> None:
    assert verdict("selinux-strict", facts(Category.TRAMPFD)) == (Action.ALLOW, "allow-trampfd", None)


# --- jit-allowlist -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exe", "categories"),
    [
        ("/usr/bin/node", (Category.WX_PROTECT,)),
        ("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", (Category.WX_MAP, Category.ANON_EXEC)),
        ("/usr/bin/python3.13", (Category.DUAL_MAP, Category.EXEC_UNLINKED)),
        ("/usr/bin/python3", (Category.W_TO_X,)),
    ],
)
def test_jit_allowlist_allows_known_jits(exe: str, categories: tuple[Category, ...]) -> None:
    assert verdict("jit-allowlist", facts(*categories, exe=exe)) == (Action.ALLOW, "known-jits", None)


def test_jit_allowlist_logs_everything_else() -> None:
    assert verdict("jit-allowlist", facts(Category.WX_MAP, exe="/usr/bin/ruby")) == (Action.LOG, None, None)
    assert verdict("jit-allowlist", facts(Category.EXECSTACK, exe="/usr/bin/node")) == (
        Action.LOG,
        None,
        None,
    )
    foreign = facts(Category.FOREIGN_WRITE, Category.W_TO_X, exe="/usr/bin/node")
    assert verdict("jit-allowlist", foreign) == (Action.LOG, "always-log-foreign-write", None)
    assert verdict("jit-allowlist", facts(Category.TRAMPFD))[0] == Action.ALLOW


# --- strict --------------------------------------------------------------------------------


@pytest.mark.parametrize("category", STRICT_WX_CATEGORIES, ids=str)
def test_strict_denies_every_wx_category_at_a_call(category: Category) -> None:
    assert verdict("strict", facts(category)) == (Action.DENY, "deny-wx", errno.EACCES)


@pytest.mark.parametrize(("syscall", "rule", "err"), [
    ("clone3", "refuse-clone3", errno.ENOSYS), ("io_uring_setup", "refuse-io-uring", errno.ENOSYS),
    ("userfaultfd", "refuse-opaque", errno.EPERM), ("clone", "refuse-opaque", errno.EPERM),
    ("seccomp", "refuse-opaque", errno.EPERM), ("recvmsg", "refuse-opaque", errno.EPERM),
])
def test_strict_refuses_what_it_cannot_see_with_each_routes_errno(syscall: str, rule: str, err: int) -> None:
    event = facts(Category.OPAQUE, syscall=syscall, prot=NONE, gained=NONE, backing_kind="special")
    assert verdict("strict", event) == (Action.DENY, rule, err)


def test_default_logs_opaque_but_lets_clone3_go() -> None:
    opaque = facts(Category.OPAQUE, syscall="io_uring_setup", prot=NONE, gained=NONE)
    assert verdict("default", opaque) == (Action.LOG, "log-wx", None)
    assert verdict("default", opaque._replace(syscall="clone3")) == (Action.ALLOW, "allow-clone3", None)


@pytest.mark.parametrize(
    "category",
    [Category.EXECSTACK, Category.READ_IMPLIES_EXEC, Category.EXEC_UNLINKED, Category.EXEC_WRITTEN],
    ids=str,
)
def test_strict_kills_what_is_found_at_exec(category: Category) -> None:
    event = facts(category, syscall="exec", prot=NONE, gained=NONE)
    assert verdict("strict", event) == (Action.KILL, "kill-at-exec", None)


def test_strict_kills_an_executable_brk_but_denies_an_executable_heap_mprotect() -> None:
    heap = facts(Category.EXECHEAP, syscall="brk", backing_kind="heap")
    assert verdict("strict", heap) == (Action.KILL, "kill-execheap-brk", None)
    protect = heap._replace(syscall="mprotect", new_mapping=False)
    assert verdict("strict", protect) == (Action.DENY, "deny-wx", errno.EACCES)


def test_strict_allows_trampfd_alone() -> None:
    assert verdict("strict", facts(Category.TRAMPFD)) == (Action.ALLOW, "allow-trampfd", None)
    assert verdict("strict", facts(Category.ANON_EXEC, Category.TRAMPFD))[0] == Action.DENY
