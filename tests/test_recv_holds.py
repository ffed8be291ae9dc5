"""Receives held like opens, by every route (issue 10, route 1): a blocking
recvmmsg, one with a timeout, i386 receives through int $0x80 (direct and
socketcall) from a 64-bit stack. Each attack natively writes code through a
received /proc/PID/mem descriptor from a sibling thread and runs it; under
strict enforce the descriptor is closed before any sibling runs again.
Native semantics survive the hold: blocking, all of a blocking recvmmsg's
messages, its timeout, EINTR."""

from __future__ import annotations

import errno
import subprocess

import pytest
from test_enforce import STRICT
from test_enforce_fds import mem_fd_server  # noqa: F401 (a fixture)
from test_run_programs import shape, trace

ROUTES = ("waitall", "mmsg", "mmsg_timeout", "int80_recvmsg", "socketcall_recvmsg", "socketcall_recvmmsg")


@pytest.mark.parametrize("route", ROUTES)
def test_a_received_mem_descriptor_is_judged_before_a_sibling_can_use_it_by_every_route(
        route, build_program, parse_output, mem_fd_server, tmp_path):  # noqa: F811
    program = str(build_program("attack_recv_routes"))
    done = subprocess.run([program, mem_fd_server, route], capture_output=True, text=True, timeout=120)
    assert parse_output(done.stdout).ran == ["race_call"], done.stdout + done.stderr
    traced = trace([program, mem_fd_server, route, "100"], tmp_path, *STRICT, timeout=300)
    out = parse_output(traced.stdout)
    assert out.ran == [], traced.stdout
    assert out.count == 100 and out.failed()["race_recv"] == "EACCES", traced.stdout + traced.stderr
    syscall = "recvmsg" if route == "waitall" or route.endswith("recvmsg") else "recvmmsg"
    assert set(shape(traced.events)) == {(syscall, ("foreign-write",))}
    assert {(e["verdict"], e["result"]) for e in traced.events} == {("denied", -errno.EACCES)}


@pytest.mark.parametrize("mode", ("mmsg_all", "mmsg_timeout", "mmsg_eintr", "int80_recvmsg",
                                  "socketcall_eintr", "restart", "waitall", "waitall_rights"))
def test_a_held_receive_keeps_its_native_meaning(mode, build_program, tmp_path):
    """Blocking, all of a blocking recvmmsg's messages (a descriptor with the
    first), its timeout checked after each datagram, EINTR from a handler
    without SA_RESTART, a restart with SA_RESTART after a handler that
    opens a file for writing (itself held), an i386 receive from a 64-bit stack that waits, and
    MSG_WAITALL (all the bytes across sends, but only up to a descriptor;
    the program's msghdr and iovecs as it wrote them): the same output
    natively and under strict enforce."""
    program = str(build_program("recv_semantics"))
    native = subprocess.run([program, mode], capture_output=True, text=True, timeout=60)
    assert native.returncode == 0, native.stdout + native.stderr
    traced = trace([program, mode], tmp_path, *STRICT, timeout=120)
    assert (traced.returncode, traced.stdout) == (0, native.stdout), traced.stderr
    assert traced.events == []
