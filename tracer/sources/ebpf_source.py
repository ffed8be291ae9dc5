"""The eBPF source: memory syscalls, execs, forks and exits of a whole host,
from kernel tracepoints.

The kernel side lives in tracer/bpf/ (wx_monitor.bpf.c, the record layout in
wx_record.h). It filters in the kernel -- only selected processes, only calls
that can matter for W^X -- pairs each call's entry with its exit, and sends
one record per call; this module turns records into tracer.events values and
fills its own gaps: a process first seen through a call is seeded with its
maps as they were before that call, an exec names its program as the
kernel's file does, and a call whose range the kernel could not describe
carries what /proc shows of it. Its neighbours own the rest: ebpf_records
(the record layout), ebpf_btf (kernel structure offsets), ebpf_loader (bcc),
ebpf_procs (cgroups and ancestry), ebpf_ring (the ring buffer). Deny rules
the kernel can express statelessly (KillRule) are applied at syscall entry
with bpf_send_signal(SIGKILL). docs/monitor.md says what is filtered, what
is exact, and what is best effort.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer import abi
from tracer.elf import ExecStackCache
from tracer.errors import NoSuchProcess, TraceError, TrampwatchError
from tracer.events import (
    UNKNOWN_PROCESS,
    AttachEvent,
    CallAgain,
    CallsRepeated,
    Event,
    ExecEvent,
    ExitEvent,
    FdObject,
    ForkEvent,
    KernelKill,
    MapEntry,
    MemCall,
    MemReturn,
    ProcessInfo,
    RecordsLost,
)
from tracer.sources import procfs
from tracer.sources.ebpf_btf import TS_COMPAT, exe_path_offsets, kernel_offsets, vma_walk_offsets
from tracer.sources.ebpf_loader import MONITOR_PROGRAM, check_host, exit_has_group_dead, load_program
from tracer.sources.ebpf_procs import cgroup_id, descendants
from tracer.sources.ebpf_records import (
    COMM_LEN,
    KILL_SYSCALLS,
    PART_FORMAT,
    RECORD_FORMAT,
    REGION_FORMAT,
    SPECIAL_MAPPING,
    ExecRecord,
    ExePathFlag,
    Filter,
    KillRule,
    Kind,
    LostSlot,
    ObjectRecord,
    Part,
    PartFlag,
    Record,
    RecordFlag,
    RegionFlag,
    RepeatKey,
    Sys,
    check_kill_rules,
)
from tracer.sources.ebpf_ring import RingReader

# Entries of the per-process kernel maps (a build-time knob).
MAX_PROCS = 16384
# Repeat keys the kernel counts at once (process x region x transition);
# a call whose key finds the map full is sent like any other.
MAX_REPEAT_KEYS = 16384
# Distinct calls remembered for CallAgain (a record's bytes but its time, and
# its first MemReturn: ~1 KiB each); the memory is cleared when full.
MAX_BODIES = 4096

# The flags every syscall record is tested for, as plain ints: IntFlag
# arithmetic made up ~40% of decoding a record.
_SYSCALL = int(Kind.SYSCALL)
_KILLED = int(RecordFlag.KILLED)
_OBJECT = int(RecordFlag.OBJECT)
_REGION = int(RecordFlag.REGION)
_REPEAT_KEY = int(RecordFlag.REPEAT_KEY)
_GROUP_DEAD = int(RecordFlag.GROUP_DEAD)
_WALKED = int(RegionFlag.WALKED)
_P_FILE = int(PartFlag.FILE)
_P_UNLINKED = int(PartFlag.UNLINKED)
_P_SHARED = int(PartFlag.SHARED)
_P_NAMED = int(PartFlag.SPECIAL | PartFlag.HEAP | PartFlag.STACK)
_MASK64 = (1 << 64) - 1
# A record's entry time comes first; the rest of it is its body (CallAgain).
_TS = struct.Struct("<Q")
_BODY_AT = _TS.size
# Flags whose record is never told as CallAgain: a kill, an object the
# descriptor's live state names, the first call of a kernel repeat key.
_NOT_AGAIN = _KILLED | _OBJECT | _REPEAT_KEY


def _anon_name(flags: int) -> str:
    """What /proc calls a VMA with no file, by its WX_P_* flags: [heap] and
    [stack] only for the initial heap and stack (another MAP_GROWSDOWN
    region has no name there)."""
    if flags & PartFlag.SPECIAL:
        return SPECIAL_MAPPING
    if flags & PartFlag.HEAP:
        return "[heap]"
    if flags & PartFlag.STACK:
        return "[stack]"
    return ""


# The name of a VMA with no file, for every combination of the flags that name it.
_ANON_NAMES = {flags: _anon_name(flags) for flags in range(_P_NAMED + 1) if flags & ~_P_NAMED == 0}

# Where a region record's header and VMAs start.
_REGION_AT = RECORD_FORMAT.size
_PARTS_AT = _REGION_AT + REGION_FORMAT.size
_PART_SIZE = PART_FORMAT.size
_WHOLE_PATH = int(ExePathFlag.WHOLE)
_PROTECTS = frozenset({"mprotect", "pkey_mprotect"})
_WX = int(abi.Prot.WRITE | abi.Prot.EXEC)


@dataclass(frozen=True)
class EbpfConfig:
    """What `EbpfSource` watches and enforces.

    `pids` (with their descendants), `comms` and `cgroups` select processes:
    every non-empty set must match, all empty selects every process.
    `cgroups` are cgroup v2 directories, absolute or relative to the cgroup2
    mount. `buffer_pages` is the ring buffer's size in pages, a power of two.
    `kill_rules` are sent SIGKILL at entry when `enforce` is true.
    `walk_vmas` lets the kernel side walk the VMA tree where this kernel's
    BTF allows it (False: only the mm's stack and brk addresses are recorded,
    as on a kernel where it cannot be walked); `walk_exe_path` likewise walks
    an exec's path up its file's dentries. `repeats` counts equal
    repeatable calls in the kernel instead of sending each.
    """

    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    buffer_pages: int = 1024
    kill_rules: tuple[KillRule, ...] = ()
    enforce: bool = True
    walk_vmas: bool = True
    walk_exe_path: bool = True
    repeats: bool = True

    def __post_init__(self) -> None:
        pages = self.buffer_pages
        if pages < 1 or pages & (pages - 1):
            raise TrampwatchError(f"--buffer-pages must be a power of two (1, 2, 4, ...), not {pages}")
        check_kill_rules(self.kill_rules)


class EbpfSource:
    """Host-wide memory events from the kernel.

    Construction compiles and attaches the kernel side (about a second) and
    raises CapabilityMissing, with the fix, when bcc, kernel headers,
    tracefs, BTF or the privileges are missing. Use as a context manager or
    call close().
    """

    def __init__(self, config: EbpfConfig):
        check_host()
        walk, self.vma_note = vma_walk_offsets() if config.walk_vmas else (None, "VMA walk turned off")
        self.walks_vmas = walk is not None
        exe_path, self.exe_path_note = exe_path_offsets() if config.walk_exe_path else (None, "turned off")
        cflags = [
            f"-DWX_RINGBUF_PAGES={config.buffer_pages}",
            f"-DWX_MAX_PROCS={MAX_PROCS}",
            f"-DWX_MAX_REPEAT_KEYS={MAX_REPEAT_KEYS if config.repeats else 1}",
            f"-DWX_REPEATS={int(config.repeats)}",
            f"-DWX_TS_COMPAT={TS_COMPAT}",
            f"-DWX_EXIT_HAS_GROUP_DEAD={int(exit_has_group_dead())}",
            f"-DWX_VMA_WALK={int(walk is not None)}",
            f"-DWX_EXE_PATH={int(exe_path is not None)}",
            *(f"-D{macro}={offset}" for macro, offset in kernel_offsets().items()),
            *(f"-D{macro}={offset}" for macro, offset in (walk or {}).items()),
            *(f"-D{macro}={offset}" for macro, offset in (exe_path or {}).items()),
        ]
        started = time.monotonic()
        self._bpf = load_program(MONITOR_PROGRAM, cflags, "eBPF monitor program")
        self.load_seconds = time.monotonic() - started
        self._reported_lost = 0
        self._ring = RingReader(self._bpf[b"records"].map_fd, config.buffer_pages * mmap.PAGESIZE)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC; events carry wall-clock time.
        self._clock_offset_ns = time.time_ns() - time.monotonic_ns()
        self._known: set[int] = set()
        # Repeat keys whose first call was delivered: key bytes -> (id, tgid,
        # mm, count delivered so far); the kernel counts the later calls.
        self._repeat_keys: dict[bytes, list[int]] = {}
        self._repeat_ids = itertools.count(1)
        self._repeated_total = 0
        self._maps_cache: dict[int, tuple[MapEntry, ...]] = {}
        # A range's VMAs as decoded in this batch, by process and record bytes:
        # a JIT's flips send the same few ranges over and over.
        self._vmas_cache: dict[tuple[int, bytes], tuple[MapEntry, ...]] = {}
        # Calls whose event follows from their record's bytes but its time
        # alone (body -> (first MemReturn, tgid, key)): the same bytes again
        # are delivered as CallAgain, without decoding them.
        self._bodies: dict[bytes, tuple[MemReturn, int, int]] = {}
        self._body_keys = itertools.count(1)
        self._exec_stacks = ExecStackCache()
        self._rule_names: list[str] = []
        self._filters = Filter(0)
        self._enforce = config.enforce
        try:
            # Selection first: each call writes the config, and kill rules
            # written before the filters would apply to every process.
            self.set_filters(pids=config.pids, comms=config.comms, cgroups=config.cgroups)
            self.set_kill_rules(config.kill_rules, config.enforce)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> EbpfSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- run-time knobs ----------------------------------------------------------------

    def set_filters(
        self,
        pids: tuple[int, ...] | None = None,
        comms: tuple[str, ...] | None = None,
        cgroups: tuple[str, ...] | None = None,
    ) -> None:
        """Replace the selection sets given (None keeps a set as it is; an
        empty tuple selects everything for that kind). Pids bring their
        running descendants and, from now on, every child they fork. Comms
        longer than the kernel's 15 characters are cut as the kernel cuts them.

        Raises NoSuchProcess for a pid that does not exist, TrampwatchError /
        CapabilityMissing for a bad cgroup.
        """
        # Resolve everything first: a bad entry must leave the sets untouched.
        updates: list[tuple[str, list[Any], Filter]] = []
        if pids is not None:
            missing = [pid for pid in pids if not Path(f"/proc/{pid}").is_dir()]
            if missing:
                raise NoSuchProcess("no such process to monitor", pid=missing[0])
            wanted = set(pids)
            updates.append(("sel_pids", sorted(wanted | descendants(wanted)), Filter.PIDS))
        if comms is not None:
            updates.append(("sel_comms", [name.encode()[: COMM_LEN - 1] for name in comms], Filter.COMMS))
        if cgroups is not None:
            updates.append(("sel_cgroups", [cgroup_id(spec) for spec in cgroups], Filter.CGROUPS))
        for name, keys, bit in updates:
            self._replace_set(name, keys, bit)
        self._write_config()

    def set_kill_rules(self, rules: tuple[KillRule, ...], enforce: bool) -> None:
        """Load `rules` into the kernel (at most MAX_KILL_RULES); they send
        SIGKILL at entry only while `enforce` is true."""
        check_kill_rules(rules)
        table = self._bpf[b"kill_rules"]
        for index, rule in enumerate(rules):
            leaf = table.Leaf()
            leaf.sys = KILL_SYSCALLS[rule.syscall]
            leaf.prot_all = rule.prot_all
            leaf.flags_all = rule.flags_all
            leaf.flags_none = rule.flags_none
            table[table.Key(index)] = leaf
        self._rule_names = [rule.rule for rule in rules]
        self._enforce = enforce
        self._write_config()

    def _replace_set(self, name: str, keys: list[Any], bit: Filter) -> None:
        """Make map `name` hold exactly `keys`; an empty set turns its filter off."""
        table = self._bpf[name.encode()]
        table.clear()
        for key in keys:
            table[table.Key(key)] = table.Leaf(1)
        self._filters = self._filters | bit if keys else self._filters & ~bit

    def _write_config(self) -> None:
        table = self._bpf[b"config"]
        leaf = table.Leaf()
        leaf.active = 1
        leaf.filters = int(self._filters)
        leaf.enforce = int(self._enforce)
        leaf.nrules = len(self._rule_names)
        table[table.Key(0)] = leaf

    # --- reading -------------------------------------------------------------------------

    def poll(self, timeout_ms: int) -> list[Event]:
        """Wait up to `timeout_ms` for records; return them as events, in order.

        A syscall gives one MemReturn, the whole call (its MemCall, and its
        KernelKill record when a kill rule fired at its entry): the kernel
        records entry and exit together, so nothing pairs them again
        (preceded by an AttachEvent the first time a process already running
        is seen), or a CallAgain when its record is, but for its time, one
        decoded before. Also ExecEvent, ForkEvent, ExitEvent, and
        last RecordsLost when the kernel side dropped records since the
        previous poll. Syscall records wake the reader only in bulk (call_wakeup() in the C
        side), so what is in the buffer is taken whether or not it woke us.
        """
        self.wait(timeout_ms)
        events = self.decode(self.take())
        if self._repeat_keys:
            table = self._bpf[b"repeated"]
            total = int(table.sum(table.Key(0)).value)
            if total != self._repeated_total:
                self._repeated_total = total
                events.extend(self._repeats(list(self._repeat_keys)))
        by_reason = self.lost_counts()
        total = sum(by_reason.values())
        if total > self._reported_lost:
            count = total - self._reported_lost
            events.append(RecordsLost(time.time(), count, total, tuple(by_reason.items())))
            self._reported_lost = total
        return events

    def wait(self, timeout_ms: int) -> None:
        """Sleep until records are ready (in bulk: call_wakeup() in the C side)
        or `timeout_ms` passed."""
        self._ring.wait(timeout_ms)

    def take(self) -> list[bytes]:
        """Return every record the kernel side has committed, undecoded (what
        poll() decodes; apart, so decoding can be measured on its own)."""
        return self._ring.take()

    def decode(self, records: list[bytes]) -> list[Event]:
        """Return the events of `records` (from take()), in order, as poll()
        does, without the repeat counts and losses poll() adds. /proc is
        read at most once per process for the batch. A call whose record
        equals, but for its time, one decoded before (same thread,
        arguments, view of its range and result: a JIT's flips) comes as
        CallAgain, and costs a dictionary look-up here."""
        self._maps_cache.clear()
        self._vmas_cache.clear()
        events: list[Event] = []
        decode, bodies, known, offset = self._decode, self._bodies, self._known, self._clock_offset_ns
        append, ts_of = events.append, _TS.unpack_from
        for data in records:
            again = bodies.get(data[_BODY_AT:])
            if again is not None and again[1] in known:
                append(CallAgain((ts_of(data)[0] + offset) / 1e9, again[0], again[2]))
            else:
                decode(data, events)
        return events

    def lost_counts(self) -> dict[str, int]:
        """Return records dropped so far, by reason: 'ringbuf' (the buffer was
        full) and 'pending' (no per-thread entry could be made: kernel memory)."""
        table = self._bpf[b"lost"]
        return {slot.name.lower(): int(table.sum(table.Key(slot)).value) for slot in LostSlot}

    def lost(self) -> int:
        """Return how many records the kernel side dropped so far."""
        return sum(self.lost_counts().values())

    def close(self) -> None:
        """Detach every program and free the maps (idempotent)."""
        ring, self._ring = getattr(self, "_ring", None), None
        if ring is not None:
            ring.close()
        bpf, self._bpf = getattr(self, "_bpf", None), None
        if bpf is not None:
            bpf.cleanup()

    # --- records to events ----------------------------------------------------------------

    def _decode(self, data: bytes, events: list[Event]) -> None:
        """Append the events of one record to `events`."""
        fields = RECORD_FORMAT.unpack_from(data)
        ts = (fields[0] + self._clock_offset_ns) / 1e9
        kind = fields[8]
        if kind == _SYSCALL:
            self._syscall(fields, data, ts, events)
            return
        rec = Record.from_buffer_copy(data)
        if kind == Kind.EXEC:
            exec_rec = ExecRecord.from_buffer_copy(data)
            # The old image's counts are final: deliver them before its end.
            events += self._repeats_of(rec.tgid, keep_mm=exec_rec.mm)
            events.append(self._exec(exec_rec, ts))
        elif kind == Kind.FORK:
            thread = bool(rec.flags & RecordFlag.THREAD)
            if rec.tgid in self._known and not thread:
                self._known.add(rec.args[1])
            shares_vm = bool(rec.flags & RecordFlag.SHARES_VM)
            events.append(ForkEvent(ts, rec.tgid, rec.tid, rec.args[1] if thread else rec.args[0], thread,
                                    shares_vm, child_tid=rec.args[0], personality=rec.personality))
        elif not rec.flags & _GROUP_DEAD:
            events.append(ExitEvent(ts, rec.tgid, rec.tid, None))
        else:
            self._known.discard(rec.tgid)
            events += self._repeats_of(rec.tgid)
            events.append(ExitEvent(ts, rec.tgid, rec.tid, rec.ret))

    # --- calls counted in the kernel -------------------------------------------------------

    def _repeat_key(self, mm: int, tgid: int, name: str, persona: int, part_flags: int,
                    args: tuple[int, ...]) -> int:
        """Note the repeat key the kernel made for this first call (the
        same fields wx_monitor.bpf.c's send_region() fills); return its id."""
        rie = persona & abi.READ_IMPLIES_EXEC != 0
        prot = args[2] & 7
        if rie and prot & 1:
            prot |= 4
        key = RepeatKey(
            mm,
            args[0] & ~4095 & _MASK64,
            (args[0] + (args[1] or 1) + 4095) & ~4095 & _MASK64,
            tgid,
            Sys.MPROTECT if name == "mprotect" else Sys.PKEY_MPROTECT,
            prot,
            part_flags,
            int(rie),
        )
        key_id = next(self._repeat_ids)
        self._repeat_keys[bytes(key)] = [key_id, tgid, mm, 0]
        return key_id

    def _repeats(self, keys: list[bytes], forget: bool = False) -> list[Event]:
        """CallsRepeated for every key in `keys` whose kernel count grew;
        with `forget`, the keys are dropped here and in the kernel (their
        process or image is gone, so the counts are final)."""
        table = self._bpf[b"repeats"]
        events: list[Event] = []
        for raw in keys:
            state = self._repeat_keys[raw] if not forget else self._repeat_keys.pop(raw)
            key = RepeatKey.from_buffer_copy(raw)
            try:
                value = table[key]
            except KeyError:
                continue
            if value.count > state[3]:
                ts = (value.last_ts + self._clock_offset_ns) / 1e9
                events.append(CallsRepeated(ts, state[1], value.last_tid, state[0], value.count - state[3]))
                state[3] = value.count
            if forget:
                with contextlib.suppress(KeyError):
                    del table[key]
        return events

    def _repeats_of(self, tgid: int, keep_mm: int | None = None) -> list[Event]:
        """Deliver and forget the repeat keys of process `tgid` (those of
        another address space than `keep_mm`, when given)."""
        keys = [raw for raw, (_, pid, mm, _) in self._repeat_keys.items() if pid == tgid and mm != keep_mm]
        return self._repeats(keys, forget=True) if keys else []

    def _syscall(self, fields: tuple, data: bytes, ts: float, events: list[Event]) -> None:
        """Append a syscall record's event: the MemReturn of the whole call,
        with its KernelKill when a kill rule fired (after an AttachEvent for
        a process first seen)."""
        tgid, tid, arch_id, nr, flags = fields[9], fields[10], fields[11], fields[12], fields[13]
        arch = abi.ARCH_NAMES[arch_id]
        name, args = _normalise(abi.SYSCALL_NAMES[arch_id][nr], arch, fields[1:7])
        result = fields[7]
        if arch == "i386" and not -4096 < result < 0:
            result &= 0xFFFFFFFF
        fd_object = vmas = repeat_key = unseen = None
        if flags & _OBJECT:
            fd_object = self._fd_object(ObjectRecord.from_buffer_copy(data), args)
        elif flags & _REGION:
            mm, _stack, _brk_start, _brk, nparts, region_flags = REGION_FORMAT.unpack_from(data, _REGION_AT)
            if region_flags == _WALKED:
                key = (tgid, data[_PARTS_AT : _PARTS_AT + nparts * _PART_SIZE])
                vmas = self._vmas_cache.get(key)
                if vmas is None:
                    parts = [PART_FORMAT.unpack_from(data, _PARTS_AT + i * _PART_SIZE) for i in range(nparts)]
                    vmas = self._vmas_cache[key] = tuple(self._vma(tgid, part) for part in parts)
                if flags & _REPEAT_KEY:
                    part_flags = PART_FORMAT.unpack_from(data, _PARTS_AT)[4]
                    repeat_key = self._repeat_key(mm, tgid, name, fields[14], part_flags, args)
        known = tgid in self._known
        if vmas is None and name in _PROTECTS and known:
            unseen = _before_call(self._maps_of(tgid), args)
        call = MemCall(ts, tgid, tid, name, arch, args, fd_object=fd_object,
                       object_size=_segment_size(name, args) if name == "shmat" else None,
                       vmas=vmas, repeat_key=repeat_key, unseen=unseen, personality=fields[14])
        if not known:
            events.append(self._attach(call, fields[14]))
        kill = KernelKill(ts, tgid, tid, self._rule_names[fields[15]]) if flags & _KILLED else None
        ret = MemReturn(call, result, None, kill)
        events.append(ret)
        if known and not flags & _NOT_AGAIN and name != "shmat" and unseen is None and (
                not flags & _REGION or (vmas is not None and _anonymous(data, len(vmas)))):
            # Its event follows from its bytes alone (no name read from /proc): remember them.
            if len(self._bodies) >= MAX_BODIES:
                self._bodies.clear()
            self._bodies[data[_BODY_AT:]] = (ret, tgid, next(self._body_keys))

    def _fd_object(self, obj: ObjectRecord, args: tuple[int, ...]) -> FdObject:
        """The object the kernel saw behind an mmap's descriptor, with the
        best path we can still find: the descriptor's link if it still refers
        to that object, else a mapping of it in /proc/PID/maps, else the
        bare dentry name (the process is gone or unmapped it)."""
        fd = ctypes.c_int32(args[4] & 0xFFFFFFFF).value
        dev, ino = os.makedev(obj.obj_dev >> 20, obj.obj_dev & 0xFFFFF), obj.obj_ino
        try:
            live = procfs.fd_object(obj.rec.tid, fd)
        except TraceError:
            live = None
        if live is not None and (live.dev, live.inode) == (dev, ino):
            return live
        path = next((m.path for m in self._maps_of(obj.rec.tgid) if (m.dev, m.inode) == (dev, ino)), None)
        return FdObject(fd, path or _object_name(obj), dev, ino)

    def _vma(self, pid: int, part: tuple) -> MapEntry:
        """One VMA (a PART_FORMAT tuple) as /proc/PID/maps names it: a file
        by its path (from the live maps when the process still maps it, else
        from its dentry name), [heap] and [stack] as the kernel tests them,
        '' for anonymous memory. Only the protection changes that cross, and
        no more than WX_MAX_PARTS of them a call: walked only when whole
        (region_flags WALKED alone), else the caller falls back to /proc."""
        start, end, ino, kdev, flags, name = part
        dev = 0
        if flags & _P_FILE:
            dev = os.makedev(kdev >> 20, kdev & 0xFFFFF)
            path = next((m.path for m in self._maps_of(pid) if (m.dev, m.inode) == (dev, ino)), None)
            if path is None:
                path = _dentry_path(os.fsdecode(name.split(b"\0", 1)[0]), not flags & _P_UNLINKED)
        else:
            ino = 0
            path = _ANON_NAMES[flags & _P_NAMED]
        return MapEntry(start, end, flags & 7, bool(flags & _P_SHARED), 0, dev, ino, path)

    def _maps_of(self, pid: int) -> tuple[MapEntry, ...]:
        """/proc/PID/maps, read at most once per batch of records."""
        if pid not in self._maps_cache:
            try:
                self._maps_cache[pid] = procfs.read_maps(pid)
            except TraceError:
                self._maps_cache[pid] = ()
        return self._maps_cache[pid]

    def _attach(self, call: MemCall, persona_now: int) -> AttachEvent:
        """Seed a process seen for the first time (running before we
        started) through `call`, from /proc, with its maps as they were
        before that call: /proc is read after it, so the call's range is
        the kernel's view of it when the call carries one, else what /proc
        shows without what the call asked for. A process already gone is
        seeded empty, with no name: the kernel's view of each call's range
        is all there is to judge it by."""
        pid = call.pid
        self._known.add(pid)
        try:
            info = procfs.read_process_info(pid)
            maps = procfs.read_maps(pid)
            persona = procfs.read_personality(pid)
            threads = tuple(procfs.list_threads(pid))
        except TraceError:
            # Gone already: judged on what the kernel sent of its calls alone.
            return AttachEvent(call.ts, pid, UNKNOWN_PROCESS, (), persona_now, ())
        if call.syscall in _PROTECTS:
            before = call.vmas if call.vmas is not None else _before_call(maps, call.args)
            start, end = _range(call.args)
            maps = tuple(sorted((*_outside(maps, start, end), *before), key=lambda m: m.start))
        written_before: tuple[tuple[int, int], ...] = ()
        with contextlib.suppress(TraceError):
            written_before = procfs.private_copies(pid, maps) + procfs.shared_may_write(pid, maps)
        return AttachEvent(call.ts, pid, info, maps, persona, threads, written_before=written_before)

    def _exec(self, exec_rec: ExecRecord, ts: float) -> ExecEvent:
        """An exec, named from the kernel's record alone (so a process gone
        before /proc is read is named as one still running), with the maps
        it had at exec: /proc's, read now, without the anonymous mappings
        and the heap made since (the model learns those from their calls:
        every mmap and brk is sent) and with the kernel's view of its new
        stack at the exec (a later mprotect may have changed /proc's)."""
        rec = exec_rec.rec
        pid = rec.tgid
        self._known.add(pid)
        info = ProcessInfo(_exe_path(exec_rec, pid), exec_rec.comm.decode(errors="replace"), exec_rec.uid)
        stack = exec_rec.stack
        at_exec = (MapEntry(stack.start, stack.end, stack.flags & 7, False, 0, 0, 0, "[stack]"),) \
            if stack.end else ()
        try:
            maps = procfs.read_maps(pid)
        except TraceError:
            maps = ()  # gone already: the kernel's view of the new stack is what remains
        kept = (m for m in maps if m.path and m.path != "[heap]" and not m.path.startswith("[anon")
                and not (at_exec and m.path == "[stack]"))
        maps = tuple(sorted((*kept, *at_exec), key=lambda m: m.start))
        execstack = self._exec_stacks.execstack(info.exe)
        former = rec.args[0] if rec.args[0] != pid else None
        return ExecEvent(ts, pid, pid, info, maps, execstack, rec.personality, former_pid=former)


def _anonymous(data: bytes, nparts: int) -> bool:
    """True when no VMA of a region record maps a file (each is named by its flags alone)."""
    return not any(PART_FORMAT.unpack_from(data, _PARTS_AT + i * _PART_SIZE)[4] & _P_FILE
                   for i in range(nparts))


def _exe_path(exec_rec: ExecRecord, pid: int) -> str:
    """The program an exec runs, as /proc/PID/exe names it: the path the
    kernel walked up from its file (with ' (deleted)' when it has no link
    left); a program with no name on disk (fexecve of a memfd) by its
    dentry name; else, where the walk could not finish, /proc/PID/exe while
    the process lives, and once it is gone the path execve was given (its
    working directory is gone with it)."""
    linked = not exec_rec.exe.flags & _P_UNLINKED
    if exec_rec.path_flags & _WHOLE_PATH:
        # Read from the buffer: ctypes cuts a char array at its first NUL.
        at = ExecRecord.path.offset
        names = bytes(exec_rec)[at : at + exec_rec.path_len].split(b"\0")
        parts = [os.fsdecode(name) for name in reversed(names) if name]
        if not linked:
            return "/" + "/".join(parts) + " (deleted)"
        return _from_our_root(parts, exec_rec.exe)
    if not linked:
        return _dentry_path(os.fsdecode(exec_rec.exe.name), linked=False)
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/exe")
    return os.fsdecode(exec_rec.filename)


def _from_our_root(parts: list[str], exe: Part) -> str:
    """The path of the walked names `parts` as /proc names it for this
    process: the kernel walks up to the machine's root, /proc from the
    reader's own root. Where the whole path is not that file from here (a
    monitor in a chroot), the longest tail of it that is names it."""
    identity = (os.makedev(exe.dev >> 20, exe.dev & 0xFFFFF), exe.ino)
    for first in range(len(parts)):
        path = "/" + "/".join(parts[first:])
        try:
            found = os.stat(path)
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == identity:
            return path
    return "/" + "/".join(parts)


def _range(args: tuple[int, ...]) -> tuple[int, int]:
    """The page range of a protection change's arguments."""
    return args[0], args[0] + ((args[1] + 4095) & ~4095)


def _outside(maps: tuple[MapEntry, ...], start: int, end: int) -> list[MapEntry]:
    """The parts of `maps` outside [start, end)."""
    kept = []
    for entry in maps:
        if entry.end <= start or entry.start >= end:
            kept.append(entry)
            continue
        if entry.start < start:
            kept.append(_clip(entry, entry.start, start, entry.prot))
        if entry.end > end:
            kept.append(_clip(entry, end, entry.end, entry.prot))
    return kept


def _before_call(maps: tuple[MapEntry, ...], args: tuple[int, ...]) -> tuple[MapEntry, ...]:
    """What `maps`, read after a protection change the kernel could not
    describe, say of its range before it: the mappings clipped to the range,
    without the write and exec the call asked for (what the model never
    saw was never mapped writable: every writable mapping is reported)."""
    start, end = _range(args)
    taken = ~(args[2] & _WX)
    return tuple(_clip(m, max(m.start, start), min(m.end, end), m.prot & taken)
                 for m in maps if m.end > start and m.start < end)


def _clip(entry: MapEntry, start: int, end: int, prot: int) -> MapEntry:
    """The part [start, end) of a maps line, with protection `prot`."""
    return MapEntry(start, end, prot, entry.shared, entry.offset + (start - entry.start), entry.dev,
                    entry.inode, entry.path)


def _normalise(name: str, arch: str, args: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Fold i386's ipc(2) into shmat/shmdt with their own argument order, as
    the ptrace source does (old_mmap's block was already read in the kernel)."""
    if arch != "i386" or name != "ipc":
        return name, args
    if args[0] & 0xFFFF == abi.IPC_SHMAT:
        return "shmat", (args[1], args[4], args[2], args[3])
    return "shmdt", (args[4],)


def _object_name(obj: ObjectRecord) -> str:
    """The path /proc would show for the object of `obj`, from its dentry
    name alone."""
    return _dentry_path(os.fsdecode(obj.obj_name), obj.obj_nlink != 0)


def _dentry_path(name: str, linked: bool) -> str:
    """The path /proc would show for an object known by its dentry name
    alone: no directory (but the '/' of memfds, SysV segments and shared
    anonymous memory), ' (deleted)' when it has no link left."""
    if name.startswith(("memfd:", "SYSV", "dev/zero")):
        name = "/" + name
    return name if linked else f"{name} (deleted)"


def _segment_size(name: str, args: tuple[int, ...]) -> int | None:
    """The size of the System V segment a shmat attaches, when it still exists."""
    segment = procfs.shm_segment(args[0]) if name == "shmat" else None
    return segment.size if segment is not None else None
