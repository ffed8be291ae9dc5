"""The pure half of the trampfd emulator: the C header against the Python
layouts (compiled, on 64 and 32 bit), the v2 code it writes (decoded), the
syscall rule, the address-space records, and the invocation rule."""

from __future__ import annotations

import errno
import shutil
import subprocess

import capstone
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_trampfd_support import INCLUDE

from tracer.trampfd import AddressSpace, Refused, TrampolineTable, TrampolineV1, include_dir, layout
from tracer.trampfd.syscall_rule import PROCESS_MADVISE, V1, V2, tell_apart
from tracer.trampfd.v1 import RegisterContext, StackContext
from tracer.trampfd.v2 import Descriptor, table_code

# Each C struct, its fields in order, and the Python layout describing it.
STRUCTS = {
    "trampfd_user": (("flags", "reserved"), layout.USER),
    "trampfd_map": (("size", "prot", "flags", "offset", "ioffset", "reserved"), layout.MAP),
    "trampfd_reg": (("name", "reserved", "value"), layout.REG),
    "trampfd_regs": (("nregs", "reserved"), layout.REGS_HEADER),
    "trampfd_stack": (("flags", "offset", "size", "reserved"), layout.STACK_HEADER),
    "trampfd_values": (("nvalues", "reserved"), layout.VALUES_HEADER),
    "trampfd_info": (("ntrampolines", "code_size", "code_offset", "reserved"), layout.INFO),
    "trampfd_code": (("ntrampolines", "reg", "table"), layout.CODE),
    "trampfd_data": (("reg", "reserved", "table"), layout.DATA),
}
# Flexible arrays: where they start and the size of one element.
FLEXIBLE = {"trampfd_regs": ("regs", layout.REG.size), "trampfd_stack": ("data", 1),
            "trampfd_values": ("values", layout.VALUE.size)}
CONSTANTS = {
    "TRAMPFD_USER": layout.TRAMPFD_USER, "TRAMPFD_NUM_TYPES": layout.TRAMPFD_NUM_TYPES,
    "TRAMPFD_MAP_OFFSET": layout.TRAMPFD_MAP_OFFSET, "TRAMPFD_REGS_OFFSET": layout.TRAMPFD_REGS_OFFSET,
    "TRAMPFD_STACK_OFFSET": layout.TRAMPFD_STACK_OFFSET,
    "TRAMPFD_ALLOWED_PCS_OFFSET": layout.TRAMPFD_ALLOWED_PCS_OFFSET,
    "TRAMPFD_MAX_REGS": layout.TRAMPFD_MAX_REGS, "TRAMPFD_MAX_DATA_SIZE": layout.TRAMPFD_MAX_DATA_SIZE,
    "TRAMPFD_MAX_STACK_OFFSET": layout.TRAMPFD_MAX_STACK_OFFSET, "TRAMPFD_MAX_PCS": layout.TRAMPFD_MAX_PCS,
    "TRAMPFD_SET_SP": layout.TRAMPFD_SET_SP, "TRAMPFD_CODE": layout.TRAMPFD_CODE,
    "TRAMPFD_DATA": layout.TRAMPFD_DATA, "TRAMPFD_NR": 440, "TRAMPFD_PAGE_SIZE": layout.PAGE_SIZE,
    "TRAMPFD_REG_MAX": layout.V1_REG_MAX, "TRAMPFD_V2_REG_MAX": layout.V2_REG_MAX,
    **{f"TRAMPFD_REG_{name.upper()}": number for name, number in layout.V1_NUMBERS.items()},
    **{f"TRAMPFD_V2_REG_{name.upper()}": number for name, number in layout.V2_NUMBERS.items()},
}


def expected_layout() -> dict[str, int]:
    """NAME -> value for every sizeof, offsetof and constant the C side prints."""
    facts = dict(CONSTANTS)
    for struct_name, (fields, fmt) in STRUCTS.items():
        facts[f"sizeof {struct_name}"] = fmt.size
        offset = 0
        for field, code in zip(fields, fmt.format.lstrip("<").replace("4I", "IIII").replace("6I", "IIIIII"),
                               strict=True):
            facts[f"offsetof {struct_name}.{field}"] = offset
            offset += 8 if code == "Q" else 4
    for struct_name, (field, size) in FLEXIBLE.items():
        facts[f"offsetof {struct_name}.{field}"] = STRUCTS[struct_name][1].size
        facts[f"sizeof {struct_name}.{field}[0]"] = size
    return facts


def c_checker() -> str:
    """A C program printing every fact of expected_layout() as 'NAME value'."""
    facts = [(name, f"(long){name}") for name in CONSTANTS]
    for struct_name, (fields, _) in STRUCTS.items():
        facts.append((f"sizeof {struct_name}", f"(long)sizeof(struct {struct_name})"))
        facts += [(f"offsetof {struct_name}.{field}", f"(long)offsetof(struct {struct_name}, {field})")
                  for field in fields]
    for struct_name, (field, _) in FLEXIBLE.items():
        facts.append((f"offsetof {struct_name}.{field}", f"(long)offsetof(struct {struct_name}, {field})"))
        element = f"((struct {struct_name} *)0)->{field}[0]"
        facts.append((f"sizeof {struct_name}.{field}[0]", f"(long)sizeof({element})"))
    body = "".join(f'\tprintf("%s %ld\\n", "{name}", {expr});\n' for name, expr in facts)
    head = '#include <stdio.h>\n#include <stddef.h>\n#include "trampfd.h"\n'
    return f"{head}int main(void)\n{{\n{body}\treturn 0;\n}}\n"


def compile_c(gcc: str, bits: str, source, binary) -> subprocess.CompletedProcess:
    cmd = [gcc, f"-m{bits}", "-Wall", "-Werror", f"-I{INCLUDE}", "-o", str(binary), str(source)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("bits", ["64", "32"])
def test_c_header_matches_the_python_layout(tmp_path, bits: str) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is not on PATH (run scripts/setup)")
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    probed = compile_c(gcc, bits, probe, tmp_path / "probe")
    if probed.returncode != 0:
        pytest.skip(f"gcc -m{bits} cannot build programs (gcc-multilib missing?): {probed.stderr.strip()}")
    source = tmp_path / "layout.c"
    source.write_text(c_checker())
    built = compile_c(gcc, bits, source, tmp_path / "layout")
    assert built.returncode == 0, built.stderr
    printed = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout
    facts = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in printed.splitlines()}
    assert facts == expected_layout()


def test_header_ships_in_the_package() -> None:
    assert (include_dir() / "trampfd.h").is_file()
    assert include_dir() == INCLUDE


def test_register_numberings_follow_the_spec() -> None:
    assert layout.V1_NUMBERS["eax"] == 0 and layout.V1_NUMBERS["eip"] == 7
    firsts = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp")
    assert [layout.V1_NUMBERS[r] for r in firsts] == list(range(8, 15))
    assert [layout.V1_NUMBERS[f"r{n}"] for n in range(8, 16)] == list(range(15, 23))
    assert layout.V1_NUMBERS["rip"] == 23 and layout.V1_REG_MAX == 24
    assert layout.V2_NUMBERS["ebp"] == 6
    assert "eip" not in layout.V2_NUMBERS and "rip" not in layout.V2_NUMBERS
    assert [layout.V2_NUMBERS[r] for r in firsts] == list(range(7, 14))
    assert [layout.V2_NUMBERS[f"r{n}"] for n in range(8, 16)] == list(range(14, 22))
    assert layout.V2_REG_MAX == 22
    assert "rsp" not in layout.V1_NUMBERS and "rsp" not in layout.V2_NUMBERS


# --- v2 code ---------------------------------------------------------------------------

REGS64 = layout.V2_REGISTERS[layout.V2_FIRST_64:]


@pytest.mark.parametrize("code_reg", REGS64)
def test_table_code_decodes_to_the_specified_loads_and_jump(code_reg: str) -> None:
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for data_reg in REGS64:
        if data_reg == code_reg:
            continue
        code = table_code(code_reg, 0x1122334455667788, data_reg, 0x99AABBCCDDEEFF00)
        assert len(code) <= layout.V2_CODE_SIZE - 1
        decoded = [(i.mnemonic, i.op_str) for i in disassembler.disasm(code, 0)]
        assert decoded == [
            ("movabs", f"{code_reg}, 0x1122334455667788"),
            ("mov", f"{code_reg}, qword ptr [{code_reg}]"),
            ("movabs", f"{data_reg}, 0x99aabbccddeeff00"),
            ("mov", f"{data_reg}, qword ptr [{data_reg}]"),
            ("jmp", code_reg),
        ]
        assert sum(len(i.bytes) for i in disassembler.disasm(code, 0)) == len(code)


def test_table_page_slots() -> None:
    table = TrampolineTable(creator=1)
    table.code = Descriptor(layout.V2_NUMBERS["r11"], 0x1000, ntrampolines=3)
    table.data = Descriptor(layout.V2_NUMBERS["r10"], 0x2000)
    page = table.code_page()
    assert len(page) == layout.PAGE_SIZE
    for slot in range(3):
        code = table_code("r11", 0x1000 + 8 * slot, "r10", 0x2000 + 8 * slot)
        start = slot * layout.V2_CODE_SIZE
        assert page[start:start + len(code)] == code
        assert set(page[start + len(code):start + layout.V2_CODE_SIZE]) == {0xCC}
    assert set(page[3 * layout.V2_CODE_SIZE:]) == {0xCC}  # unused slots trap


# --- the syscall rule ----------------------------------------------------------------------


def test_syscall_rule() -> None:
    pidfds = {3}
    rule = lambda *args: tell_apart(args, True, pidfds.__contains__)  # noqa: E731
    assert rule(3, 0x7FFF0000, 1, 20, 0) == PROCESS_MADVISE  # a real call on a pidfd
    assert rule(0, 0x7FFF0000, 0, 99, 99) == V1  # trampfd_create(TRAMPFD_USER, &user, 0), garbage after
    assert rule(1, 0x7FFF0000, 0) == V1  # type 1 (EINVAL), fd 1 is no pidfd
    assert rule(0, 0, 0) == V1  # NULL data or NULL info: EINVAL either way
    assert rule(0x7FFF1000, 5, 6) == V2  # trampfd(&info), garbage after
    assert rule(-1 & 0xFFFFFFFFFFFFFFFF, 0, 0) == V1  # no user address: a bad type
    # with a number of its own, a pidfd-looking first argument is just a type
    assert tell_apart((3, 0x7FFF0000, 0), False, pidfds.__contains__) == V1


# --- address spaces ----------------------------------------------------------------------


def test_address_space_forget_and_fork() -> None:
    space = AddressSpace()
    first, second, table = TrampolineV1(), TrampolineV1(), TrampolineTable(creator=1)
    space.v1_pages.update({0x10000: first, 0x11000: second})
    space.tables[0x20000] = table
    child = space.forked()
    assert child.v1_pages == {} and child.tables == {0x20000: table}
    space.forget(0x10FFF, 2)  # one byte of each v1 page
    assert space.v1_pages == {}
    assert space.has_table(table)
    space.forget(0x1F000, 0x1000)  # the page below the table
    assert space.has_table(table)
    space.forget(0x20000, 0x1000)
    assert not space.has_table(table)


# --- the invocation rule -----------------------------------------------------------------------


def with_context(stack: StackContext | None = None) -> TrampolineV1:
    trampoline = TrampolineV1()
    trampoline.regs = RegisterContext(((layout.V1_NUMBERS["rdi"], 7), (layout.V1_RIP, 0x401000)))
    trampoline.stack = stack
    return trampoline


def test_invocation_checks_in_order() -> None:
    assert with_context().invoke(0x10000, 0x10008, 0x7000) is None  # not at mapping + ioffset
    assert TrampolineV1().invoke(0x10000, 0x10000, 0x7000) is None  # no register context
    patch = with_context().invoke(0x10000, 0x10000, 0x7008)
    assert patch is not None and patch.registers == {"rdi": 7, "rip": 0x401000} and not patch.stack_data


@given(sp=st.integers(0x10000, 0x7FFF_FFFF_F000), size=st.integers(1, 64), offset=st.integers(0, 256),
       set_sp=st.booleans())
def test_stack_rule(sp: int, size: int, offset: int, set_sp: bool) -> None:
    data = bytes(range(size))
    stack = StackContext(layout.TRAMPFD_SET_SP if set_sp else 0, offset, data)
    patch = with_context(stack).invoke(0x10000, 0x10000, sp)
    assert patch is not None and patch.stack_data == data
    below = sp - size - offset
    if set_sp:
        assert patch.stack_addr == patch.registers["rsp"] == (below & ~0xF) - 8
        assert (patch.stack_addr + 8) % 16 == 0 and patch.stack_addr <= below
    else:
        assert patch.stack_addr == below and "rsp" not in patch.registers


def test_register_context_write_rules() -> None:
    trampoline = TrampolineV1()

    def write(raw: bytes) -> None:
        trampoline.write(layout.TRAMPFD_REGS_OFFSET, 1, len(raw), lambda count: raw)

    rip = layout.REG.pack(layout.V1_RIP, 0, 0x401000)
    write(layout.REGS_HEADER.pack(1, 0) + rip)
    assert trampoline.regs is not None and trampoline.regs.target() == 0x401000
    with pytest.raises(Refused) as refused:
        write(layout.REGS_HEADER.pack(1, 0) + layout.REG.pack(layout.V1_NUMBERS["rax"], 0, 1))
    assert refused.value.errno == errno.EINVAL
    trampoline.allowed_pcs = (0x402000,)
    with pytest.raises(Refused):
        write(layout.REGS_HEADER.pack(1, 0) + rip)
    write(layout.REGS_HEADER.pack(0, 0))
    assert trampoline.regs is None
