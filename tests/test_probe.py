"""Tests of `trampwatch doctor`'s probes on this host: every probe must give
a definite answer, and the answers must match what the host really allows
(checked here by other means where one exists)."""

from __future__ import annotations

import os

import pytest

from tracer.probe import Probe, format_table, probe_all
from tracer.sources import ebpf_loader

pytestmark = pytest.mark.ebpf


@pytest.fixture(scope="module")
def probes() -> dict[str, Probe]:
    """Every probe's answer, by name (probing takes a few seconds: once)."""
    answers = probe_all()
    names = [p.name for p in answers]
    assert len(names) == len(set(names)), f"probe names repeat: {names}"
    return {p.name: p for p in answers}


def test_every_probe_gives_a_definite_answer(probes: dict[str, Probe]) -> None:
    undecided = {name: p.detail for name, p in probes.items() if p.ok is None}
    assert undecided == {}
    for probe in probes.values():
        assert probe.detail, probe
        if not probe.ok:
            assert probe.fix, f"{probe.name} fails without saying how to fix it"


def test_bpf_lsm_and_fentry_are_refused_with_eperm(probes: dict[str, Probe]) -> None:
    # This host lists no usable BPF LSM or fentry: loading them fails with EPERM.
    for name in ("bpf-lsm", "fentry"):
        assert probes[name].ok is False
        assert "EPERM" in probes[name].detail, probes[name].detail


def test_send_signal_and_mdwe_work(probes: dict[str, Probe]) -> None:
    assert probes["bpf-send-signal"].ok is True, probes["bpf-send-signal"].detail
    assert probes["mdwe"].ok is True, probes["mdwe"].detail


def test_monitor_prerequisites_hold(probes: dict[str, Probe]) -> None:
    for name in ("privileges", "bcc", "kernel-headers", "tracefs", "tracepoints", "btf", "monitor-program"):
        assert probes[name].ok is True, f"{name}: {probes[name].detail}"


def test_kernel_headers_probe_names_the_link_target(probes: dict[str, Probe]) -> None:
    build = ebpf_loader.headers_dir()
    assert str(build.resolve()) in probes["kernel-headers"].detail
    assert os.uname().release in probes["kernel-headers"].detail


def test_privileges_probe_agrees_with_the_effective_uid(probes: dict[str, Probe]) -> None:
    assert f"uid {os.geteuid()}" in probes["privileges"].detail


def test_ptrace_hook_replaces_the_static_check() -> None:
    hooked = Probe("ptrace", False, "PTRACE_SEIZE: EPERM", "run as root", "run")
    answers = {p.name: p for p in probe_all(ptrace_probe=lambda: hooked)}
    assert answers["ptrace"] is hooked


def test_format_table_shows_status_detail_and_fix() -> None:
    table = format_table(
        [
            Probe("alpha", True, "fine"),
            Probe("beta-long", False, "broken", "do this", "monitor"),
            Probe("gamma", None, "not tried"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["ok", "alpha", "fine"]
    assert lines[1].startswith("FAIL  beta-long  broken | needed by: monitor")
    assert lines[2].strip() == "fix: do this"
    assert lines[3].split()[:2] == ["n/a", "gamma"]
