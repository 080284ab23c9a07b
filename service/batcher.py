"""Dynamic batching: coalesce concurrent requests for one model into one session.run (leader/follower).

There is no batcher thread. A caller that finds the model idle becomes the leader: it takes whatever
is queued (waiting for more until `max_queue_delay` after it arrived, see `adaptive`) up to
`max_batch_size` rows, runs them as one
batch on its own thread, hands the next queued caller the lead, then wakes each follower with its
rows. A caller that finds the model busy queues and sleeps on a lock of its own until it is answered
or handed the lead. This saves the thread handoff of a dedicated worker, and each caller is woken once.
Rows may carry a third array (explain graphs: an `edge_mask` row per problem), concatenated like a
and b and passed to `run` as its third argument. Runs directly, unbatched: a request of at least `max_batch_size` rows, and any request when batching
is off (max_batch_size 1).
A request whose RPC ends before it runs (client cancelled, deadline passed) leaves the queue at once,
through the `watch` callback, and is never run.
"""

import _thread
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from service.errors import AdderError, Cancelled, DeadlineExceeded, Unavailable
from service.metrics import Metrics
from service.runtime import Answers

_QUEUED, _TAKEN, _LEAD, _GONE = 0, 1, 2, 3
# A cancellation this close to the deadline is grpc's deadline timer: report DEADLINE_EXCEEDED.
_DEADLINE_SLACK_S = 0.05
_NO_DEADLINE_S = 24 * 3600.0  # gRPC reports "no deadline" as a huge time left; waits cannot take it


class _Request:
    __slots__ = ("a", "b", "mask", "rows", "enqueued", "expires", "state", "answers", "error", "wake", "abandoned")

    def __init__(self, a: np.ndarray, b: np.ndarray, timeout: float | None, mask: np.ndarray | None = None):
        self.a, self.b, self.mask, self.rows = a, b, mask, len(a)
        self.enqueued = time.perf_counter()
        self.expires = None if timeout is None else self.enqueued + timeout
        self.state = _QUEUED
        self.answers: Answers | None = None
        self.error: BaseException | None = None
        self.abandoned = False  # its RPC ended while it led or sat in a batch not yet running
        # A bare lock is the cheapest thing to sleep on: released once, when answered or handed the lead.
        self.wake = _thread.allocate_lock()
        self.wake.acquire()


class Batcher:
    def __init__(self, model: str, run: Callable[..., Answers], metrics: Metrics,
                 max_batch_size: int, max_queue_delay_s: float, adaptive: bool = False):
        """`adaptive`: wait for a batch to fill only when the previous batch had several callers, so a
        lone caller (sequential traffic) never pays the delay; otherwise always wait (Triton's rule)."""
        self.model = model
        self._run = run
        self._max_rows = max_batch_size
        self._delay = max_queue_delay_s
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._busy = False  # a leader is collecting or running a batch
        self._adaptive = adaptive
        self._last_callers = 0  # callers in the previous batch
        self._closed = False
        self._lock = threading.Lock()
        self._full = threading.Condition(self._lock)  # a waiting leader: the queue filled a batch, or drain
        self._idle = threading.Condition(self._lock)  # close(): the last leader finished
        self._inference = metrics.child(metrics.inference_duration, model)
        self._batch_size = metrics.child(metrics.batch_size, model)
        self._queue_duration = metrics.child(metrics.queue_duration, model)

    def infer(self, a: np.ndarray, b: np.ndarray, timeout: float | None = None,
              watch: Callable[[Callable[[], None]], bool] | None = None, mask: np.ndarray | None = None) -> Answers:
        """Answer rows a, b (int64 [N]); raises DeadlineExceeded if not answered within `timeout` s.

        `mask` (explain batchers, where every request has one): rows of the graph's third input.

        `watch(callback)` (grpc's context.add_callback) calls back when the RPC ends; it returns False
        when the RPC has ended already. A request still waiting then is dropped: Cancelled/DeadlineExceeded.
        An expired `timeout` never reaches the model.
        """
        if timeout is not None and timeout > _NO_DEADLINE_S:
            timeout = None
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded(f"deadline exceeded before model {self.model} ran")
        if self._max_rows == 1 or len(a) >= self._max_rows:
            return self._timed_run(a, b, mask)
        request = _Request(a, b, timeout, mask)
        with self._lock:
            if self._closed:
                raise Unavailable(f"model {self.model} is shutting down")
            if self._busy:
                self._queue.append(request)
                self._queued_rows += request.rows
                # a leader waiting to fill its batch counts its own rows too: let it take this one now
                self._full.notify()
            else:
                self._busy = True
                request.state = _LEAD
        if watch is not None and not watch(lambda: self._abandon(request)):
            self._abandon(request)
        if request.state != _LEAD:
            self._follow(request, timeout)
            if request.state != _LEAD:
                if request.error is not None:
                    raise request.error
                return request.answers
        return self._lead(request, timeout)

    def drain(self) -> None:
        """Stop waiting for batches to fill: in-flight requests run at once."""
        with self._lock:
            self._delay = 0.0
            self._full.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Later callers get UNAVAILABLE; waits (at most `timeout` s) for what is queued to run."""
        with self._lock:
            self._closed = True
            self._delay = 0.0
            self._full.notify_all()
            self._idle.wait_for(lambda: not self._busy, timeout)

    def _abandon(self, request: _Request) -> None:
        """The request's RPC ended (also called after a normal answer: then it is a no-op)."""
        with self._lock:
            if request.state == _QUEUED:  # never collected: leave the queue, wake the caller with the error
                self._queue.remove(request)
                self._queued_rows -= request.rows
                self._drop(request)
            elif request.state in (_LEAD, _TAKEN):  # the leader drops it if its batch has not started
                request.abandoned = True
                self._full.notify_all()

    def _drop(self, request: _Request) -> None:
        request.state = _GONE
        request.error = self._ended(request)
        request.wake.release()

    def _ended(self, request: _Request) -> AdderError:
        if request.expires is not None and time.perf_counter() >= request.expires - _DEADLINE_SLACK_S:
            return DeadlineExceeded(f"deadline exceeded after {request.expires - request.enqueued:.3f} s "
                                    f"waiting for model {self.model}")
        return Cancelled(f"cancelled by the client while waiting for model {self.model}")

    def _follow(self, request: _Request, timeout: float | None) -> None:
        if request.wake.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return
        with self._lock:
            if request.state == _QUEUED:  # never collected: nobody will run it
                self._queue.remove(request)
                self._queued_rows -= request.rows
                request.state = _GONE
                raise DeadlineExceeded(
                    f"deadline exceeded after {timeout:.3f} s waiting for model {self.model}")
        if request.state == _TAKEN:  # in a batch that is running: its answer is dropped
            raise DeadlineExceeded(f"deadline exceeded after {timeout:.3f} s waiting for model {self.model}")
        request.wake.acquire()  # handed the lead just now: the release is imminent; others depend on it

    def _lead(self, request: _Request, timeout: float | None) -> Answers:
        batch = [request]
        rows = request.rows
        expires = request.expires
        with self._lock:
            rows = self._take(batch, rows)
            if self._delay > 0 and rows < self._max_rows and (not self._adaptive or self._last_callers > 1):
                fill_by = request.enqueued + self._delay
                if expires is not None:
                    fill_by = min(fill_by, expires)
                # a cancelled leader still fills the batch for its live followers: their wait is the
                # batch's, not shortened by someone else leaving (they may be about to leave too)
                while rows < self._max_rows and self._delay > 0 and not (request.abandoned and len(batch) == 1):
                    wait = fill_by - time.perf_counter()
                    if wait <= 0:
                        break
                    self._full.wait(wait)
                    rows = self._release_abandoned(batch, rows)
                    if not request.abandoned:
                        rows = self._take(batch, rows)
            rows = self._release_abandoned(batch, rows)
            self._last_callers = len(batch)
            if len(batch) == 1 and request.abandoned:  # nobody to answer: do not run the model
                self._hand_over()
                raise self._ended(request)
            if expires is not None and len(batch) == 1 and time.perf_counter() >= expires:
                self._hand_over()
                raise DeadlineExceeded(f"deadline exceeded after {timeout:.3f} s waiting for model {self.model}")
        try:
            answers = self._run_batch(batch, rows)
        except BaseException as error:  # handed to every caller; errors.rpc logs it once per RPC
            with self._lock:
                self._hand_over()
            for r in batch[1:]:
                r.error = error
                r.wake.release()
            raise
        with self._lock:
            self._hand_over()
        offset = request.rows
        for r in batch[1:]:
            r.answers = answers.rows(offset, offset + r.rows)
            offset += r.rows
            r.wake.release()
        return answers if len(batch) == 1 else answers.rows(0, request.rows)

    def _release_abandoned(self, batch: list[_Request], rows: int) -> int:
        """Followers whose RPC ended leave a batch that has not started, at once; the caller holds the lock."""
        if any(r.abandoned for r in batch[1:]):
            for r in batch[1:]:
                if r.abandoned:
                    self._drop(r)
            batch[:] = [r for r in batch if r.state != _GONE]
            rows = sum(r.rows for r in batch)
        return rows

    def _take(self, batch: list[_Request], rows: int) -> int:
        """Move queued requests into `batch` while they fit; the caller holds the lock."""
        queue = self._queue
        while queue and rows + queue[0].rows <= self._max_rows:
            r = queue.popleft()
            r.state = _TAKEN
            rows += r.rows
            self._queued_rows -= r.rows
            batch.append(r)
        return rows

    def _hand_over(self) -> None:
        """The oldest queued caller leads next, woken before the followers: its batch can start sooner."""
        if self._queue:
            nxt = self._queue.popleft()
            self._queued_rows -= nxt.rows
            nxt.state = _LEAD
            nxt.wake.release()
        else:
            self._busy = False
            self._idle.notify_all()

    def _run_batch(self, batch: list[_Request], rows: int) -> Answers:
        start = time.perf_counter()
        for r in batch:
            self._queue_duration.observe(start - r.enqueued)
        if len(batch) == 1:
            return self._timed_run(batch[0].a, batch[0].b, batch[0].mask)
        mask = None if batch[0].mask is None else np.concatenate([r.mask for r in batch])
        return self._timed_run(np.concatenate([r.a for r in batch]), np.concatenate([r.b for r in batch]), mask)

    def _timed_run(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> Answers:
        start = time.perf_counter()
        answers = self._run(a, b) if mask is None else self._run(a, b, mask)
        self._inference.observe(time.perf_counter() - start)
        self._batch_size.observe(len(a))
        return answers
