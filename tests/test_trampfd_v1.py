"""trampfd v1 under the emulator, sentence by sentence of the specification
(docs/trampfd-api.md; the emulator in docs/trampfd.md): compiled C
programs run by `trampwatch run --emulate-trampfd`, printing what the kernel
side returned and what the trampoline's target saw."""

from __future__ import annotations

import pytest
from test_trampfd_support import Output, program, trace

# Every call of tf_errno.c and the errno the specification gives it ('0': success).
EXPECTED_ERRNO = {
    # trampfd_create(type, data, flags) and struct trampfd_user
    "create_type1": "EINVAL", "create_type7": "EINVAL", "create_null": "EINVAL", "create_flags": "EINVAL",
    "create_user_flags": "EINVAL", "create_user_reserved": "EINVAL", "create_efault": "EFAULT",
    "create": "0",
    # lseek: SEEK_SET to 0..3 only
    "lseek_cur": "EINVAL", "lseek_end": "EINVAL", "lseek_4": "EINVAL", "lseek_neg": "EINVAL",
    "lseek_3": "0", "lseek_0": "0",
    # reads: NULL buffer, zero count, offsets without a read, the map struct read whole
    "read_null": "EINVAL", "read_zero": "EINVAL", "read_map_23": "EINVAL", "read_map_25": "EINVAL",
    "read_map": "0", "read_map_efault": "EFAULT", "read_pcs": "EINVAL", "read_offset4": "EINVAL",
    "read_regs_7": "EINVAL", "read_regs_none": "0", "read_stack_15": "EINVAL", "read_stack_none": "0",
    "read_map_plain": "0", "read_map_again": "0",
    # writes and the register context
    "write_map": "EINVAL", "write_null": "EINVAL", "write_zero": "EINVAL", "write_offset4": "EINVAL",
    "regs_count_short": "EINVAL", "regs_count_long": "EINVAL", "regs_count_7": "EINVAL", "regs_41": "EINVAL",
    "regs_40": "0", "regs_header_reserved": "EINVAL", "regs_entry_reserved": "EINVAL",
    "regs_name_eax": "EINVAL", "regs_name_ebp": "EINVAL", "regs_name_eip": "EINVAL", "regs_name_24": "EINVAL",
    "regs_no_rip": "EINVAL", "regs_rip_0": "EINVAL", "regs_last_rip_0": "EINVAL", "regs_efault": "EFAULT",
    "regs_ok": "0", "regs_read": "0", "regs_clear": "0", "regs_read_cleared": "0",
    # the stack context
    "stack_size_65": "EINVAL", "stack_offset_257": "EINVAL", "stack_flags_2": "EINVAL",
    "stack_reserved": "EINVAL", "stack_count_short": "EINVAL", "stack_count_long": "EINVAL",
    "stack_count_15": "EINVAL", "stack_max": "0", "stack_ok": "0", "stack_read": "0", "stack_clear": "0",
    "stack_read_cleared": "0",
    # allowed PCs
    "pcs_17": "EINVAL", "pcs_zero": "EINVAL", "pcs_reserved": "EINVAL", "pcs_count": "EINVAL",
    "pcs_16": "0", "pcs_ok": "0", "pcs_regs_allowed": "0", "pcs_regs_refused": "EINVAL", "pcs_clear": "0",
    "pcs_regs_after_clear": "0",
    # mmap: exactly (one page, PROT_NONE, MAP_PRIVATE, offset 0)
    "map_len": "EINVAL", "map_read": "EINVAL", "map_write": "EINVAL", "map_exec": "EINVAL",
    "map_shared": "EINVAL", "map_populate": "EINVAL", "map_offset": "EINVAL", "map_ok": "0",
    # no vectored I/O on a trampfd
    "readv": "EINVAL", "writev": "EINVAL", "preadv": "EINVAL",
    # descriptors: dup and F_DUPFD stay at the floor, below it is refused
    "dup": "0", "dup_read": "0", "dupfd": "0", "dup2_low": "EBADF", "dup3_low": "EBADF", "dup2_high": "0",
    "dup2_high_read": "0", "dup_shared_position": "0", "close_dup": "0", "closed_read": "EBADF",
    "still_read": "0",
}


@pytest.fixture(scope="module")
def errno_run(tmp_path_factory: pytest.TempPathFactory) -> Output:
    run = trace([str(program("tf_errno"))], tmp_path_factory.mktemp("errno"))
    assert run.returncode == 0, run.stderr
    assert run.out.done
    return run.out


@pytest.mark.parametrize("label", sorted(EXPECTED_ERRNO))
def test_errno(errno_run: Output, label: str) -> None:
    assert errno_run.errno(label) == EXPECTED_ERRNO[label]


def test_every_call_has_an_expectation(errno_run: Output) -> None:
    assert set(errno_run.steps) == set(EXPECTED_ERRNO)


def test_successful_calls_return_the_count_asked_for(errno_run: Output) -> None:
    counts = {"read_map": 24, "read_regs_none": 8, "read_stack_none": 16, "regs_40": 8 + 16 * 40,
              "regs_ok": 40, "regs_read": 56, "regs_clear": 8, "stack_max": 16 + 64, "stack_ok": 21,
              "stack_read": 24, "stack_clear": 16, "pcs_16": 8 + 8 * 16, "pcs_ok": 16, "pcs_clear": 8,
              "lseek_3": 3, "lseek_0": 0}
    assert {label: errno_run.steps[label][0] for label in counts} == counts


def test_descriptor_is_a_close_on_exec_read_write_trampfd_at_the_floor(errno_run: Output) -> None:
    assert errno_run.ints("fd")[0] >= 1000
    assert errno_run.ints("cloexec") == [1]
    assert errno_run.ints("accmode") == [2]  # O_RDWR
    assert errno_run.values["link"] == "trampfd"


def test_map_struct(errno_run: Output) -> None:
    # size one page, PROT_NONE, MAP_PRIVATE, offset 0, ioffset 0, reserved 0
    assert errno_run.ints("map") == [4096, 0, 2, 0, 0, 0]
    assert errno_run.values["map_perms"] == "---p"


def test_contexts_read_back(errno_run: Output) -> None:
    assert errno_run.ints("regs_none") == [0, 0]
    assert errno_run.ints("stack_none") == [0, 0, 0, 0]
    # nregs 2; rip (23) = target; r15 (22) = 0x1515; then zeros up to the count asked for
    assert errno_run.ints("regs_read") == [2, 0, 23, 0, 1, 22, 0, 0x1515, 0, 0, 0]
    assert errno_run.ints("regs_cleared") == [0, 0, 0]
    # flags SET_SP, offset 24, size 5, the 5 bytes, then zeros
    assert errno_run.ints("stack_read") == [1, 24, 5, 0, 1, 2, 3, 4, 5, 0, 0, 0]
    assert errno_run.ints("stack_cleared") == [0, 0, 0, 0]


def test_duplicates_stay_at_the_floor(errno_run: Output) -> None:
    assert errno_run.ints("dup_floor") == [1] and errno_run.ints("dup_cloexec") == [0]
    assert errno_run.ints("dupfd_floor") == [1] and errno_run.ints("dupfd_cloexec") == [1]


# --- invocation ---------------------------------------------------------------------

REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def invoke(tmp_path, *args: str, options: tuple[str, ...] = ()) -> tuple[int, Output]:
    run = trace([str(program("tf_invoke")), *args], tmp_path, *options)
    return run.returncode, run.out


def test_target_sees_every_register_of_the_context(tmp_path) -> None:
    code, out = invoke(tmp_path, "regs")
    assert code == 0
    regs = out.pairs("regs")
    assert [regs[name] for name in REGS] == [0x1100000000000000 + (i << 32) + 0xA0 + i for i in range(15)]
    assert out.ints("result") == [0x5EED]


def test_call_leaves_the_return_address_for_the_target(tmp_path) -> None:
    _, out = invoke(tmp_path, "regs")
    sp = out.pairs("sp")
    assert sp["rsp"] == sp["saved"] - 8  # no stack context: rsp as after the call
    assert sp["top"] == sp["return"]  # the target returns straight to the caller


def test_last_of_a_repeated_name_wins(tmp_path) -> None:
    _, out = invoke(tmp_path, "repeat")
    regs = out.pairs("regs")
    assert (regs["rdi"], regs["rsi"]) == (2, 5)


def window_bytes(out: Output) -> bytes:
    return bytes.fromhex("".join(out.values[f"window{i}"] for i in range(4)))


@pytest.mark.parametrize(("size", "offset", "set_sp"), [
    (16, 0, True), (1, 3, True), (5, 24, True), (64, 256, True), (24, 8, True), (8, 0, True),
    (16, 0, False), (5, 24, False), (64, 256, False),
])
def test_stack_context(tmp_path, size: int, offset: int, set_sp: bool) -> None:
    code, out = invoke(tmp_path, "stack", str(size), str(offset), "1" if set_sp else "0")
    assert code == 0 and out.errno("set_stack") == "0"
    sp = out.pairs("sp")
    at_fault = sp["saved"] - 8  # the call pushed the return address
    data_at = at_fault - size - offset
    if set_sp:
        data_at = (data_at & ~0xF) - 8
        assert sp["rsp"] == data_at
        assert (sp["rsp"] + 8) % 16 == 0  # aligned as right after a call
    else:
        assert sp["rsp"] == at_fault
    window = window_bytes(out)
    start = data_at - (sp["rsp"] - 384)
    assert window[start:start + size] == bytes(range(1, size + 1))


def test_allowed_pcs_let_the_listed_target_run(tmp_path) -> None:
    code, out = invoke(tmp_path, "allowed")
    assert (code, out.errno("set_pcs"), out.ints("allowed")) == (0, "0", [42])


def test_second_trampoline_in_the_same_page_range(tmp_path) -> None:
    code, out = invoke(tmp_path, "second")
    assert code == 0
    assert out.values["second"] == "hinted=1 results=101,202,103"


SEGV_ACCERR, SEGV_MAPERR = 2, 1


@pytest.mark.parametrize("offset", [1, 16, 4095])
def test_invocation_at_a_wrong_offset_is_sigsegv(tmp_path, offset: int) -> None:
    code, out = invoke(tmp_path, "offset", str(offset))
    assert code == 77
    assert out.segv["offset"] == {"code": SEGV_ACCERR, "addr": offset, "rip": offset}


def test_invocation_at_the_start_works(tmp_path) -> None:
    code, out = invoke(tmp_path, "offset", "0")
    assert (code, out.ints("offset")) == (0, [2])


@pytest.mark.parametrize("how", ["read", "write"])
def test_data_access_to_the_trampoline_page_is_sigsegv(tmp_path, how: str) -> None:
    code, out = invoke(tmp_path, "access", how)
    assert code == 77
    segv = out.segv["access"]
    assert (segv["code"], segv["addr"]) == (SEGV_ACCERR, 8)
    assert not 0 <= segv["rip"] < 4096  # the faulting instruction is the program's


@pytest.mark.parametrize("how", ["never", "removed"])
def test_invocation_without_a_register_context_is_sigsegv(tmp_path, how: str) -> None:
    code, out = invoke(tmp_path, "nocontext", how)
    assert code == 77
    assert out.segv["nocontext"] == {"code": SEGV_ACCERR, "addr": 0, "rip": 0}


def test_unmapped_trampoline_is_an_ordinary_page_again(tmp_path) -> None:
    code, out = invoke(tmp_path, "unmap")
    assert code == 77
    assert out.ints("mapped") == [2] and out.errno("unmap") == "0" and out.ints("same_address") == [1]
    assert out.segv["unmapped"] == {"code": SEGV_ACCERR, "addr": 0, "rip": 0}


def test_failed_stack_copy_is_sigsegv_with_registers_loaded(tmp_path) -> None:
    code, out = invoke(tmp_path, "stackfault")
    assert code == 77
    assert out.segv["stackfault"]["rip"] == 0  # rip is the target: registers were loaded first


def test_trace_trampolines_reports_each_invocation(tmp_path) -> None:
    run = trace([str(program("tf_invoke")), "second"], tmp_path, "--trace-trampolines")
    ops = [e["syscall"] for e in run.events]
    assert ops.count("trampfd-create") == 2 and ops.count("trampfd-map") == 2
    invokes = [e for e in run.events if e["syscall"] == "trampfd-invoke"]
    assert len(invokes) == 3
    assert all(e["categories"] == ["trampfd"] and e["verdict"] == "allowed" for e in run.events)
    maps = [e["addr"] for e in run.events if e["syscall"] == "trampfd-map"]
    assert [e["addr"] for e in invokes] == [maps[0], maps[1], maps[0]]
    # the registers set (rsi, then rip: the target) are the event's args
    assert [e["args"][0] for e in invokes] == [100, 200, 100]
    assert all(e["result"] == e["args"][1] for e in invokes)
    # ... and, for people, the target resolved to its symbol and the registers by name
    for event in invokes:
        assert event["detail"]["target"].startswith(f"{event['result']:#x} (tf_invoke:")
        assert event["detail"]["registers"] == f"rsi={event['args'][0]:#x},rip={event['result']:#x}"
        assert event["caller"]["object"].endswith("tf_invoke")


def test_invocations_are_not_reported_without_the_flag(tmp_path) -> None:
    run = trace([str(program("tf_invoke")), "second"], tmp_path)
    assert sorted(e["syscall"] for e in run.events) == ["trampfd-create"] * 2 + ["trampfd-map"] * 2
