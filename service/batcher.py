"""Dynamic batching: coalesce concurrent requests for one model into one session.run.

Callers block in `infer` on a future; one worker thread per model takes the oldest request, adds
whatever else is queued (waiting at most `max_queue_delay` for more) up to `max_batch_size` rows,
runs them as one batch and hands each caller its rows. Runs directly on the caller's thread: a
request of at least `max_batch_size` rows, any request when batching is off (max_batch_size 1), and,
with no queue delay, a request that finds the model idle and nobody queued (it would be a batch of
one, and the thread handoff costs more than it saves).
"""

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from service.errors import DeadlineExceeded, Unavailable
from service.metrics import Metrics
from service.runtime import Answers


_WAKE = object()  # run what is collected now (drain)
_STOP = object()  # run what is collected, then exit


@dataclass
class _Request:
    a: np.ndarray
    b: np.ndarray
    enqueued: float = field(default_factory=time.perf_counter)
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(self, model: str, run: Callable[[np.ndarray, np.ndarray], Answers], metrics: Metrics,
                 max_batch_size: int, max_queue_delay_s: float):
        self.model = model
        self._run = run
        self._metrics = metrics
        self._max_rows = max_batch_size
        self._delay = max_queue_delay_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._busy = threading.Lock()  # held during this model's batched or idle-path session.run
        self._worker = None
        if max_batch_size > 1:
            self._worker = threading.Thread(target=self._loop, name=f"batcher-{model}", daemon=True)
            self._worker.start()

    def infer(self, a: np.ndarray, b: np.ndarray, timeout: float | None = None) -> Answers:
        """Answer rows a, b (int64 [N]); raises DeadlineExceeded if not answered within `timeout` s."""
        if self._worker is None or len(a) >= self._max_rows:
            return self._timed_run(a, b)
        if self._delay == 0 and not self._closed and self._queue.empty() and self._busy.acquire(blocking=False):
            # Idle model, nobody queued: a batch would be this request alone, so skip the thread handoff.
            try:
                self._metrics.queue_duration.labels(self.model).observe(0.0)
                return self._timed_run(a, b)
            finally:
                self._busy.release()
        request = _Request(a, b)
        with self._lock:  # nothing may be queued behind _STOP, it would never run
            if self._closed:
                raise Unavailable(f"model {self.model} is shutting down")
            self._queue.put(request)
        try:
            return request.future.result(timeout)
        except FutureTimeout:
            # Not yet started: the worker will skip it. Already running: the answer is dropped.
            request.future.cancel()
            raise DeadlineExceeded(f"deadline exceeded after {timeout:.3f} s waiting for model {self.model}") from None
        except CancelledError:
            raise Unavailable(f"model {self.model} is shutting down") from None

    def drain(self) -> None:
        """Stop waiting for batches to fill: in-flight requests run at once."""
        self._delay = 0.0
        self._queue.put(_WAKE)

    def close(self) -> None:
        """Run what is queued, then stop the worker; later callers get UNAVAILABLE."""
        with self._lock:
            self._closed = True
            self._queue.put(_STOP)
        if self._worker is not None:
            self._worker.join()

    def _timed_run(self, a: np.ndarray, b: np.ndarray) -> Answers:
        start = time.perf_counter()
        answers = self._run(a, b)
        self._metrics.inference_duration.labels(self.model).observe(time.perf_counter() - start)
        self._metrics.batch_size.labels(self.model).observe(len(a))
        return answers

    def _loop(self) -> None:
        carry = None  # a request that did not fit in the previous batch
        stopping = False
        while not stopping:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                break
            if first is _WAKE:
                continue
            # Collect once the model is free (an idle-path run may hold it): the batch grows meanwhile.
            with self._busy:
                batch, rows = [first], len(first.a)
                deadline = first.enqueued + self._delay
                while rows < self._max_rows:
                    try:
                        wait = deadline - time.perf_counter()
                        item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _WAKE or item is _STOP:
                        stopping = item is _STOP
                        break
                    if rows + len(item.a) > self._max_rows:
                        carry = item
                        break
                    batch.append(item)
                    rows += len(item.a)
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Request]) -> None:
        # Skip callers that gave up (deadline): their rows would be wasted work.
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.perf_counter()
        for r in live:
            self._metrics.queue_duration.labels(self.model).observe(start - r.enqueued)
        try:
            a = live[0].a if len(live) == 1 else np.concatenate([r.a for r in live])
            b = live[0].b if len(live) == 1 else np.concatenate([r.b for r in live])
            answers = self._timed_run(a, b)
        except Exception as error:  # handed to every caller; errors.rpc logs it once per RPC
            for r in live:
                r.future.set_exception(error)
            return
        offset = 0
        for r in live:
            r.future.set_result(answers.rows(offset, offset + len(r.a)))
            offset += len(r.a)
