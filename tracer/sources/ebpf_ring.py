"""The consumer side of a BPF ring buffer map, read by mapping it: every
ready record in one pass, without a Python callback per record."""

from __future__ import annotations

import contextlib
import mmap
import select
import struct

# A BPF ring buffer record's 8-byte header: its length, with these bits.
_RINGBUF_BUSY = 1 << 31
_RINGBUF_DISCARD = 1 << 30
_RINGBUF_HEADER = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingReader:
    """The consumer side of a BPF ring buffer map, read by mapping it.

    bcc's reader calls a Python function through ctypes for every record;
    this one copies every record that is ready in one pass. The map's first
    page is the consumer position (ours to write), the second the producer
    position, then the data pages, mapped twice in a row so a record that
    wraps around the end reads as one piece (kernel/bpf/ringbuf.c).
    """

    def __init__(self, map_fd: int, size: int):
        page = mmap.PAGESIZE
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._view = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = page
        self._epoll = select.epoll()
        # Readable while records are ready; the producers wake a sleeping
        # reader only now and then (call_wakeup() in wx_monitor.bpf.c).
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Sleep until records are ready (and a producer woke us) or `timeout_ms` passed."""
        with contextlib.suppress(InterruptedError):
            self._epoll.poll(timeout_ms / 1000)

    def take(self) -> list[bytes]:
        """Return every committed record, in order, and release their space."""
        view, data, mask = self._view, self._data, self._mask
        consumer = _U64.unpack_from(self._consumer, 0)[0]
        producer = _U64.unpack_from(view, 0)[0]
        records = []
        while consumer < producer:
            at = data + (consumer & mask)
            header = _U32.unpack_from(view, at)[0]
            if header & _RINGBUF_BUSY:
                break  # reserved, not yet submitted: later records wait for it
            length = header & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
            if not header & _RINGBUF_DISCARD:
                records.append(view[at + _RINGBUF_HEADER : at + _RINGBUF_HEADER + length])
            consumer += (length + _RINGBUF_HEADER + 7) & ~7
        _U64.pack_into(self._consumer, 0, consumer)
        return records

    def close(self) -> None:
        """Unmap the buffer."""
        self._epoll.close()
        self._view.close()
        self._consumer.close()
