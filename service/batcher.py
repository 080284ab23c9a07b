"""Dynamic batching: coalesce concurrent requests for one model into one session.run (leader/follower).

There is no batcher thread. A caller that finds the model idle becomes the leader: it takes whatever
is queued (waiting for more until `max_queue_delay` after it arrived, see `adaptive`) up to
`max_batch_size` rows, runs them as one batch on its own thread, hands the next queued caller the lead,
then wakes each follower with its rows. A caller that finds the model busy queues and sleeps on a lock
of its own until it is answered or handed the lead. This saves the thread handoff of a dedicated
worker, and each caller is woken once.
Rows may carry a third array (explain graphs: an `edge_mask` row per problem), concatenated like a
and b and passed to `run` as its third argument. Runs directly, unbatched: a request of at least
`max_batch_size` rows, and any request when batching is off (max_batch_size 1).

A request leaves before its batch runs when its deadline passes (the batcher's own timers) or its RPC
ends (the `watch` callback, which says why: `Leave`). It leaves at once and is never run: from the
queue, from a batch still filling, or from the lead of one (its oldest follower then leads that batch
on, with the same fill time). Once a batch runs, every caller in it gets its answer.
"""

import _thread
import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.errors import Cancelled, DeadlineExceeded, Unavailable
from service.metrics import Metrics
from service.runtime import Answers

_NO_DEADLINE_S = 24 * 3600.0  # gRPC reports "no deadline" as a huge time left; waits cannot take it


class Leave(enum.Enum):
    """Why a request left before it was answered."""

    DEADLINE = "deadline"  # its deadline passed: DEADLINE_EXCEEDED
    CANCELLED = "cancelled"  # its client went away: CANCELLED


class _State(enum.Enum):
    QUEUED = "queued"  # in the queue, waiting for a leader to take it
    TAKEN = "taken"  # in the batch a leader is filling: it may still leave
    LEAD = "lead"  # fills the batch, runs it and answers the others
    RUNNING = "running"  # in the batch being run: its answer comes, whatever happens now
    GONE = "gone"  # left (Leave) before its batch ran: never run


_WAITING = frozenset((_State.QUEUED, _State.TAKEN, _State.LEAD))  # the states a request can leave from

# watch(on_end): calls on_end(Leave) when the request's RPC ends (at once if it has ended already). The
# batcher's on_end also has `waiting()`: a watch may ask it first and skip the call once it is False.
Watch = Callable[[Callable[[Leave], None]], None]


@dataclass(frozen=True)
class BatcherState:
    """What the batcher holds right now (for tests and debugging)."""

    queued: int  # callers waiting in the queue
    batch: int  # callers in the batch being filled or run, its leader included; 0: idle
    filling: bool  # the leader is waiting for its batch to fill


class _Request:
    __slots__ = ("a", "b", "mask", "rows", "timeout", "enqueued", "expires", "state", "leaving", "answers",
                 "error", "wake")

    def __init__(self, a: np.ndarray, b: np.ndarray, timeout: float | None, mask: np.ndarray | None = None):
        self.a, self.b, self.mask, self.rows, self.timeout = a, b, mask, len(a), timeout
        self.enqueued = time.perf_counter()
        self.expires = None if timeout is None else self.enqueued + timeout
        self.state = _State.QUEUED
        self.leaving: Leave | None = None  # a leader's RPC ended: it leaves its batch when it next wakes
        self.answers: Answers | None = None
        self.error: BaseException | None = None
        # A bare lock is the cheapest thing to sleep on: released when answered, gone or handed the lead.
        self.wake = _thread.allocate_lock()
        self.wake.acquire()

    def time_left(self) -> float:
        """Seconds until its deadline (-1: none), the way lock.acquire takes a timeout."""
        return -1 if self.expires is None else max(self.expires - time.perf_counter(), 0.0)


class _Departure:
    """A request's on_end for its watch: it leaves for the reason given, if it still waits."""

    __slots__ = ("batcher", "request")

    def __init__(self, batcher: "Batcher", request: _Request):
        self.batcher, self.request = batcher, request

    def __call__(self, reason: Leave) -> None:
        self.batcher._leave(self.request, reason)

    def waiting(self) -> bool:
        return self.request.state in _WAITING


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
        self._batch: list[_Request] = []  # that batch, its leader first
        self._batch_rows = 0
        self._fill_by: float | None = None  # when the batch stops waiting to fill (None: it does not wait)
        self._filling = False  # its leader sleeps on _full
        self._adaptive = adaptive
        self._last_callers = 0  # callers in the previous batch
        self._closed = False
        self._lock = threading.Lock()
        self._full = threading.Condition(self._lock)  # a waiting leader: more rows, a departure, or drain
        self._idle = threading.Condition(self._lock)  # close(): the last leader finished
        self._inference = metrics.child(metrics.inference_duration, model)
        self._batch_size = metrics.child(metrics.batch_size, model)
        self._queue_duration = metrics.child(metrics.queue_duration, model)

    def infer(self, a: np.ndarray, b: np.ndarray, timeout: float | None = None, watch: Watch | None = None,
              mask: np.ndarray | None = None) -> Answers:
        """Answer rows a, b (int64 [N]); raises DeadlineExceeded if not answered within `timeout` s.

        `mask` (explain batchers, where every request has one): rows of the graph's third input.
        `watch` (see Watch): a request whose RPC ends before its batch runs leaves with the reason given,
        raising DeadlineExceeded or Cancelled. An expired `timeout` never reaches the model.
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
                if self._filling:  # a leader waiting to fill its batch: let it take this one now
                    self._full.notify()
                waits = True
            else:
                self._busy = True
                self._start_batch(request)
                waits = self._fill_by is not None
        # A leader that runs at once can no longer leave (nothing waits), so it needs no watch: the
        # lone caller of sequential traffic registers no callback with its RPC.
        if watch is not None and waits:
            watch(_Departure(self, request))
        if request.state is not _State.LEAD:
            self._follow(request)
            if request.state is not _State.LEAD:
                if request.error is not None:
                    raise request.error
                return request.answers
        return self._lead(request)

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

    def state(self) -> BatcherState:
        with self._lock:
            return BatcherState(len(self._queue), len(self._batch) if self._busy else 0, self._filling)

    def _leave(self, request: _Request, reason: Leave) -> None:
        """`request` leaves now unless its batch runs already (then a no-op, as after its answer)."""
        with self._lock:
            self._depart(request, reason)

    def _depart(self, request: _Request, reason: Leave) -> None:
        """`request` leaves for `reason`; the caller holds the lock. A leader leaves when it next wakes."""
        if request.state is _State.QUEUED:
            self._queue.remove(request)
            self._queued_rows -= request.rows
            self._gone(request, reason)
        elif request.state is _State.TAKEN:
            self._batch.remove(request)
            self._batch_rows -= request.rows
            self._gone(request, reason)
        elif request.state is _State.LEAD and request.leaving is None:
            request.leaving = reason
            self._full.notify_all()

    def _gone(self, request: _Request, reason: Leave) -> None:
        request.state = _State.GONE
        if reason is Leave.DEADLINE:
            waited = f" after {request.timeout:.3f} s" if request.timeout is not None else ""
            request.error = DeadlineExceeded(f"deadline exceeded{waited} waiting for model {self.model}")
        else:
            request.error = Cancelled(f"cancelled by the client while waiting for model {self.model}")
        request.wake.release()

    def _follow(self, request: _Request) -> None:
        """Sleep until answered, gone or handed the lead; at its deadline, leave."""
        if request.wake.acquire(timeout=request.time_left()):
            return
        with self._lock:
            self._depart(request, Leave.DEADLINE)
            running = request.state is _State.RUNNING
        if running:  # in the batch being run: its answer comes too late and is dropped
            raise DeadlineExceeded(f"deadline exceeded after {request.timeout:.3f} s waiting for model {self.model}")
        request.wake.acquire()  # released by _gone just now, or by a hand-over: then it leads, and leaves

    def _lead(self, leader: _Request) -> Answers:
        with self._lock:
            batch = self._collect(leader)
            if batch is None:
                raise leader.error
            rows = self._batch_rows
            for r in batch:
                r.state = _State.RUNNING
            self._last_callers = len(batch)
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
        offset = leader.rows
        for r in batch[1:]:
            r.answers = answers.rows(offset, offset + r.rows)
            offset += r.rows
            r.wake.release()
        return answers if len(batch) == 1 else answers.rows(0, leader.rows)

    def _collect(self, leader: _Request) -> list[_Request] | None:
        """Fill `leader`'s batch until it is full, its fill time passes or drain; the caller holds the lock.

        None: the leader left first (its deadline, its RPC's end) and handed the batch on.
        """
        while True:
            self._take()
            now = time.perf_counter()
            if leader.leaving is None and leader.expires is not None and now >= leader.expires:
                leader.leaving = Leave.DEADLINE
            if leader.leaving is not None:
                self._pass_lead(leader)
                return None
            fill_by = self._fill_by
            if fill_by is None or self._delay <= 0 or self._batch_rows >= self._max_rows or now >= fill_by:
                return self._batch
            until = fill_by if leader.expires is None else min(fill_by, leader.expires)
            self._filling = True
            self._full.wait(until - now)
            self._filling = False

    def _take(self) -> None:
        """Move queued requests into the batch while they fit; the caller holds the lock."""
        queue = self._queue
        while queue and self._batch_rows + queue[0].rows <= self._max_rows:
            r = queue.popleft()
            r.state = _State.TAKEN
            self._queued_rows -= r.rows
            self._batch.append(r)
            self._batch_rows += r.rows

    def _start_batch(self, leader: _Request) -> None:
        """`leader` starts a new batch; whether it waits to fill is decided now. The caller holds the lock."""
        leader.state = _State.LEAD
        self._batch, self._batch_rows = [leader], leader.rows
        waits = self._delay > 0 and (not self._adaptive or self._last_callers > 1)
        self._fill_by = leader.enqueued + self._delay if waits else None

    def _pass_lead(self, leader: _Request) -> None:
        """`leader` leaves its batch: its oldest follower leads it on (same fill time), or with nobody left
        the next queued caller starts a batch. The caller holds the lock."""
        self._batch.remove(leader)
        self._batch_rows -= leader.rows
        self._gone(leader, leader.leaving)
        if self._batch:
            heir = self._batch[0]
            heir.state = _State.LEAD
            heir.wake.release()
        else:
            self._last_callers = 1  # a batch whose lone caller left counts as a batch of one (adaptive)
            self._hand_over()

    def _hand_over(self) -> None:
        """The oldest queued caller leads next, woken before the followers: its batch can start sooner."""
        if self._queue:
            nxt = self._queue.popleft()
            self._queued_rows -= nxt.rows
            self._start_batch(nxt)
            nxt.wake.release()
        else:
            self._busy = False
            self._batch, self._batch_rows = [], 0
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
