"""The flow of README.md ("How it works"), held in place: sources -> events -> shadow
model -> classify -> policy -> actions/outputs, wired by pipeline and cli.
Every import inside tracer/ must point to the same step or one to its left,
and bcc, ptrace, seccomp, yaml and click each belong to one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TRACER = Path(__file__).resolve().parent.parent / "tracer"

# Each module's step, left (0) to right. A package prefix covers its modules.
STEPS: dict[str, int] = {
    "tracer": 0, "tracer.resources": 0, "tracer.abi": 0, "tracer.categories": 0, "tracer.errors": 0,
    "tracer.events": 0, "tracer.runs": 0, "tracer.collector": 0,
    "tracer.elf": 0, "tracer.elf_fast": 0, "tracer.symbols": 0, "tracer.trampolines": 0, "tracer.trampfd": 0,
    "tracer.trampfd_binding": 0,
    "tracer.sources": 1, "tracer.probe": 1,
    "tracer.shadow": 2,
    "tracer.subject": 3, "tracer.classify": 3, "tracer.attribution": 3, "tracer.scan": 3,
    "tracer.policy": 4,
    "tracer.judgement": 5, "tracer.judging": 5, "tracer.inspect": 5,
    "tracer.actions": 6,
    "tracer.outputs": 7,
    "tracer.pipeline": 8, "tracer.replay": 8, "tracer.caches": 8,
    "tracer.cli": 9, "tracer.__main__": 9,
}

# Third-party modules that one module alone may import.
OWNERS = {
    "bcc": "tracer.sources.ebpf_loader",
    "ptrace": "tracer.sources.ptrace_source",
    "seccomp": "tracer.sources.seccomp_filter",
    "yaml": "tracer.policy.loader",
    "click": "tracer.cli",
}


def step_of(module: str) -> int:
    """The step of a module: that of its longest listed prefix."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in STEPS:
            return STEPS[name]
    raise AssertionError(f"{module} has no step in STEPS: add it where it belongs in the flow")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(TRACER.rglob("*.py")):
        parts = path.relative_to(TRACER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def imports_of(name: str, path: Path) -> list[str]:
    """Absolute names of everything the module imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            # `from tracer import trampolines`: the names may be modules too.
            found += [f"{target}.{alias.name}" for alias in node.names
                      if _is_module(f"{target}.{alias.name}")]
    return found


def _is_module(name: str) -> bool:
    return (TRACER.parent / Path(*name.split("."))).with_suffix(".py").exists()


def backward_imports(name: str, path: Path) -> list[str]:
    """Imports of tracer modules to the right of `name` in the flow."""
    own = step_of(name)
    return [t for t in imports_of(name, path) if t.split(".")[0] == "tracer" and step_of(t) > own]


@pytest.mark.parametrize(("name", "path"), modules(), ids=[name for name, _ in modules()])
def test_imports_flow_one_way(name: str, path: Path) -> None:
    assert backward_imports(name, path) == [], f"{name} imports against the flow"
    for target in imports_of(name, path):
        top = target.split(".")[0]
        if top in OWNERS:
            assert OWNERS[top] == name, f"{name} imports {top}: only {OWNERS[top]} may"


def test_the_check_sees_an_import_against_the_flow(tmp_path: Path) -> None:
    # What shadow.py would be if it judged with the policy itself.
    module = tmp_path / "shadow.py"
    module.write_text("from .policy import engine\nfrom . import abi\n")
    assert backward_imports("tracer.shadow", module) == ["tracer.policy", "tracer.policy.engine"]


def test_every_owner_exists() -> None:
    names = {name for name, _ in modules()}
    assert set(OWNERS.values()) <= names
