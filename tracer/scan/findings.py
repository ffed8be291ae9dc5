"""What scan reports about one ELF file: executable stacks, W+X load
segments, text relocations, READ_IMPLIES_EXEC triggers, and imports of the
closure and memory APIs that trampolines are built with."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.categories import Category
from tracer.classify import classify
from tracer.elf import ElfInfo
from tracer.subject import file_subject

# Finding kinds: the first four are hazards (classify gives them taxonomy
# categories), the last three are facts worth knowing that no category covers.
EXECSTACK = "execstack"
WX_SEGMENT = "wx-segment"
TEXTREL = "textrel"
READ_IMPLIES_EXEC = "read-implies-exec"
CLOSURE_API = "closure-api"
MEMORY_API = "memory-api"
NO_GNU_STACK = "no-gnu-stack"

# Imports that build trampolines: libffi's closure API, and the cache flush
# that JITs and trampoline writers call after writing code.
CLOSURE_FUNCTIONS = frozenset(
    {
        "ffi_closure_alloc",
        "ffi_prep_closure_loc",
        "ffi_prep_closure",
        "__clear_cache",
        "__builtin___clear_cache",
    }
)
# Imports that can map or re-protect memory executable, or make the anonymous
# file a dual mapping needs.
MEMORY_FUNCTIONS = frozenset({"mmap", "mmap64", "mprotect", "pkey_mprotect", "memfd_create", "shmat"})

# 32-bit ABIs on which the kernel turns a missing PT_GNU_STACK into
# READ_IMPLIES_EXEC at exec (x86's ia32 and arm64's compat ARM).
_RIE_MACHINES = frozenset({"EM_386", "EM_ARM"})


@dataclass(frozen=True)
class Finding:
    """One hazard or indicator in one file. `categories` are the taxonomy
    categories classify gives it, most severe first (empty for indicators)."""

    kind: str
    categories: tuple[Category, ...]
    detail: str


@dataclass(frozen=True)
class ScanResult:
    """One scanned file: its ELF facts and findings, or why it could not be
    read (`error` is ElfError's reason code, `message` the explanation)."""

    path: str
    info: ElfInfo | None
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    message: str = ""

    @property
    def categories(self) -> tuple[Category, ...]:
        """Every category of every finding, most severe first."""
        return classify(file_subject(self.path, tuple(finding.kind for finding in self.findings)))


def findings_for(info: ElfInfo) -> tuple[Finding, ...]:
    """Return the W^X findings of one parsed ELF file, hazards first.

    Relocatable objects, core files and separate debug-info files (whose
    headers are copies of another file's) have no segment findings.
    """
    if info.e_type not in ("EXEC", "DYN") or not info.has_code:
        return ()
    found = [*_stack_findings(info)]
    for seg in info.segments:
        if seg.writable_executable:
            found.append((WX_SEGMENT,
                          f"PT_LOAD at {seg.vaddr:#x} ({seg.memsz:#x} bytes) is writable and executable"))
    if info.textrel:
        found.append((TEXTREL,
                      "DT_TEXTREL: the loader writes into code pages, then makes them executable again"))
    for kind, names in ((CLOSURE_API, CLOSURE_FUNCTIONS), (MEMORY_API, MEMORY_FUNCTIONS)):
        used = sorted(info.imports & names)
        if used:
            found.append((kind, "imports " + ", ".join(used)))
    return tuple(Finding(kind, classify(file_subject(info.path, (kind,))), detail) for kind, detail in found)


def _stack_findings(info: ElfInfo) -> list[tuple[str, str]]:
    """The stack's finding (kind, detail), if any."""
    if info.execstack:
        return [(EXECSTACK, "PT_GNU_STACK asks for an executable stack")]
    if info.execstack is False:
        return []
    if not info.is_program:
        # glibc's ld.so treats a library without the header as needing an
        # executable stack, and makes the whole process's stack executable.
        return [(EXECSTACK, "no PT_GNU_STACK: ld.so makes the stack executable when it loads this library")]
    if info.elfclass == 32 and info.machine in _RIE_MACHINES:
        return [(READ_IMPLIES_EXEC,
                 "no PT_GNU_STACK on a 32-bit program: the kernel sets READ_IMPLIES_EXEC at exec")]
    return [(NO_GNU_STACK, "no PT_GNU_STACK: READ_IMPLIES_EXEC on kernels before 5.8, none since")]
