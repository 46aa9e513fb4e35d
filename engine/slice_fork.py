"""Taking a snapshot slice in a forked child, off the worker's GIL.

Copying a partition's state out (`engine.snapshot.capture`) on the worker's loop and then
rendering and encoding it on a thread held the interpreter lock for hundreds of
milliseconds: `json.dumps` of a slice is one C call that never lets go of it. Every
intent in flight waited: at 1,000 intents/s the latency p99 was 216-489 ms with slices on
and 65 ms with them off, one stall a slice (docs/benchmarks.md, session 8).

`ForkedSlice` forks at the moment the slice is due. The child's memory is the state as
it was then (copy on write), so nothing is copied on the loop and the child captures,
renders and encodes on its own interpreter. It waits for the offsets the slice names,
which the worker knows only once the batch's transaction has committed, and writes back
the encoded slice. A slice whose transaction failed is dropped: the child reads end of
file and exits. The child never touches the parent's Kafka clients, locks or logging;
any error ends it with a non-zero status and the slice is simply not published (a lost
slice costs only a longer replay).
"""

from __future__ import annotations

import gc
import json
import os
import signal
from typing import ClassVar

from engine.snapshot import capture, encode_slice, render
from engine.state import EngineState


class ForkedSlice:
    """One partition's slice, being taken by a child process forked from the worker."""

    _open_fds: ClassVar[set[int]] = set()
    """The parent's ends of every live child's pipes: a later child closes them, so a
    child sees end of file when the worker (not a sibling) closes its pipe."""

    def __init__(self, state: EngineState, partition: int) -> None:
        self.partition = partition
        offsets_r, offsets_w = os.pipe()
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (its exit status is checked)
            _child(state, partition, offsets_r, result_w, (offsets_w, result_r))
        os.close(offsets_r)
        os.close(result_w)
        self.pid = pid
        self._offsets_w: int | None = offsets_w
        self._result_r: int | None = result_r
        ForkedSlice._open_fds.update((offsets_w, result_r))

    def finish(self, offsets: dict[str, int]) -> tuple[bytes, str] | None:
        """Hand the child the offsets the slice names; (blob, digest), or None if the
        child failed. Blocks while the child works (call it off the worker's loop:
        reading a pipe releases the interpreter lock)."""
        assert self._offsets_w is not None and self._result_r is not None
        try:
            os.write(self._offsets_w, json.dumps(offsets, sort_keys=True).encode())
        except OSError:
            pass  # the child is gone; its status says so below
        self._close_w()
        chunks: list[bytes] = []
        while True:
            data = os.read(self._result_r, 1 << 20)
            if not data:
                break
            chunks.append(data)
        ok = self._reap()
        raw = b"".join(chunks)
        digest, sep, blob = raw.partition(b"\n")
        if not ok or not sep or len(digest) != 64:
            return None
        return blob, digest.decode()

    def drop(self) -> None:
        """The slice will not be published: the child reads end of file and exits."""
        self._close_w()
        self._reap()

    def _close_w(self) -> None:
        if self._offsets_w is not None:
            ForkedSlice._open_fds.discard(self._offsets_w)
            os.close(self._offsets_w)
            self._offsets_w = None

    def _reap(self) -> bool:
        if self._result_r is not None:
            ForkedSlice._open_fds.discard(self._result_r)
            os.close(self._result_r)
            self._result_r = None
        _pid, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status) == 0


def _child(
    state: EngineState, partition: int, offsets_r: int, result_w: int, mine: tuple[int, int]
) -> None:  # pragma: no cover - runs in the child
    status = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gc.disable()  # short-lived: nothing to collect, and no pages touched for it
        for fd in ForkedSlice._open_fds | set(mine):
            try:
                os.close(fd)
            except OSError:
                pass
        c = capture(state, partition)
        chunks = []
        while True:
            data = os.read(offsets_r, 1 << 16)
            if not data:
                break
            chunks.append(data)
        if chunks:  # no offsets: the slice was dropped
            offsets = {str(k): int(v) for k, v in json.loads(b"".join(chunks)).items()}
            blob, digest = encode_slice(render(c, offsets))
            out = digest.encode() + b"\n" + blob
            view = memoryview(out)
            while view:
                view = view[os.write(result_w, view) :]
        status = 0
    finally:
        os._exit(status)
