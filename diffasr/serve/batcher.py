"""One model, one worker thread, and a queue that batches segments across requests.

Requests put their speech segments on the queue; the worker takes the oldest, then
waits up to ``max_wait`` seconds for more with the same decode options, up to
``max_batch``, and decodes them in one call.  Other work on the model (enrollment)
goes through the same thread, so the model is never used by two threads at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Segment:
    samples: np.ndarray
    enrollment: Any
    options: Dict[str, Any]
    future: Future = field(default_factory=Future)

    @property
    def key(self):
        return tuple(sorted(self.options.items()))


@dataclass
class _Call:
    function: Callable[[], Any]
    future: Future = field(default_factory=Future)


class ShuttingDown(RuntimeError):
    pass


def _malloc_trim():
    """glibc's malloc_trim, or None.  A batch's logits (batch x canvas x 51,865 floats for
    the Whisper decoder) are freed after each batch, but glibc keeps the pages; trimming
    hands them back, so the server's RSS follows its working set instead of its peak."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()


class Batcher:
    """``decode(segments, enrollments, options) -> results`` run on batches from a queue."""

    def __init__(self, decode: Callable[[List[np.ndarray], List[Any], Dict[str, Any]], list],
                 max_batch: int = 8, max_wait: float = 0.05,
                 others_coming: Callable[[], bool] = lambda: True):
        """``others_coming()``: whether other requests may still add segments; when it
        says no (a lone request), the worker does not wait ``max_wait`` for them."""
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self.decode, self.max_batch, self.max_wait = decode, max_batch, max_wait
        self.others_coming = others_coming
        self._queue: "queue.Queue" = queue.Queue()
        self._stopping = threading.Event()
        self.batch_sizes: List[int] = []  # decoded batch sizes, for /health and tests
        self._thread = threading.Thread(target=self._run, name="diffasr-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers
    def submit(self, segments: List[np.ndarray], enrollment: Any, options: Dict[str, Any]) -> List[Future]:
        if self._stopping.is_set():
            raise ShuttingDown("the server is shutting down")
        items = [_Segment(s, enrollment, dict(options)) for s in segments]
        for item in items:
            self._queue.put(item)
        return [item.future for item in items]

    def call(self, function: Callable[[], Any]) -> Future:
        """Run ``function`` on the model's thread (between batches)."""
        if self._stopping.is_set():
            raise ShuttingDown("the server is shutting down")
        item = _Call(function)
        self._queue.put(item)
        return item.future

    def stop(self, timeout: Optional[float] = None) -> None:
        """Finish what is queued, then stop the worker."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        held: List[Any] = []  # taken from the queue but not yet run (other options)
        while True:
            item = held.pop(0) if held else self._queue.get()
            if item is None:
                if self._queue.empty() and not held:
                    return
                self._queue.put(None)  # drain first
                continue
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            batch = [item]
            deadline = time.monotonic() + (self.max_wait if self.others_coming() else 0.0)
            while len(batch) < self.max_batch:
                same = next((h for h in held if isinstance(h, _Segment) and h.key == item.key), None)
                if same is not None:
                    held.remove(same)
                    batch.append(same)
                    continue
                remaining = deadline - time.monotonic()
                try:
                    more = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, _Segment) and more.key == item.key:
                    batch.append(more)
                else:
                    held.append(more)
                    if more is None:
                        break
            self._run_batch(batch)

    def _run_call(self, item: _Call) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            item.future.set_result(item.function())
        except BaseException as e:  # handed to the caller
            item.future.set_exception(e)

    def _run_batch(self, batch: List[_Segment]) -> None:
        batch = [b for b in batch if b.future.set_running_or_notify_cancel()]
        if not batch:
            return
        self.batch_sizes.append(len(batch))
        try:
            results = self.decode([b.samples for b in batch], [b.enrollment for b in batch], batch[0].options)
        except BaseException as e:
            logger.exception("decoding a batch failed")
            for b in batch:
                b.future.set_exception(e)
            return
        for b, result in zip(batch, results):
            b.future.set_result(result)
        if MALLOC_TRIM is not None:
            MALLOC_TRIM(0)
