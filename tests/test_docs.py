"""The documentation matches the code: the taxonomy page has a section per
category, and every file the README, the docs, docstrings, programs and
policies name exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from tracer.categories import Category

ROOT = Path(__file__).resolve().parent.parent
TOP_DIRS = ("docs", "tracer", "tests", "scripts", "examples", "policies")
# A repository path (`docs/x.md`, `tracer/bpf/wx_record.h`), or a document
# named alone (`closures.md`, looked for beside the naming file and in docs/).
_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(TOP_DIRS) + r")/[\w./*-]*[\w*])(<?)")
_DOC_NAME = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
_OUTSIDE = re.compile(r"/work/\S+")


def _texts() -> list[Path]:
    """Every file whose text names other files."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "policies").glob("*"))]
    for top in ("tracer", "tests", "scripts", "examples"):
        found += [p for p in sorted((ROOT / top).rglob("*")) if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix in (".py", ".c", ".h", ".md", ".rb", "") and not p.is_symlink()]
    # This file's own examples name missing files on purpose.
    return [p for p in found if p.is_file() and "bin" not in p.relative_to(ROOT).parts
            and p != Path(__file__).resolve()]


def broken_references(path: Path, text: str) -> list[str]:
    """The references in `text` (from `path`) to files that do not exist."""
    broken = []
    for match in _PATH.finditer(text):
        ref, placeholder = match[1].rstrip("."), match[2]
        if placeholder or "NAME" in ref:
            continue  # a pattern: probe_<name>.bpf.c, NAME.c
        exists = any(ROOT.glob(ref)) if "*" in ref else (ROOT / ref).exists()
        if not exists:
            broken.append(ref)
    for match in _DOC_NAME.finditer(text):
        if not any((where / match[1]).exists() for where in (path.parent, ROOT / "docs", ROOT)):
            broken.append(match[1])
    broken += [f"{ref} (outside the repository)" for ref in _OUTSIDE.findall(text)]
    return broken


def test_every_category_has_a_section_in_severity_order():
    text = (ROOT / "docs" / "taxonomy.md").read_text()
    sections = re.findall(r"^## `([a-z-]+)`$", text, re.MULTILINE)
    assert sections == [category.value for category in Category]


def test_every_category_section_names_its_fields_and_legitimate_users():
    text = (ROOT / "docs" / "taxonomy.md").read_text()
    bodies = re.split(r"^## `[a-z-]+`$", text, flags=re.MULTILINE)[1:]
    for category, body in zip(Category, bodies, strict=True):
        assert "- Fields:" in body and "- Legitimate users:" in body, category.value


def test_the_reference_check_finds_a_missing_file():
    text = "see docs/no-such-page.md, absent.md, tracer/bpf/probe_<name>.bpf.c and /work/elsewhere.md"
    assert broken_references(ROOT / "README.md", text) == [
        "docs/no-such-page.md", "absent.md", "/work/elsewhere.md (outside the repository)"]


def test_every_referenced_file_exists():
    broken = {}
    for path in _texts():
        found = broken_references(path, path.read_text(errors="replace"))
        if found:
            broken[str(path.relative_to(ROOT))] = found
    assert broken == {}
