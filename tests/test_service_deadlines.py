"""Deadlines and cancellation: an expired or too-short deadline gets DEADLINE_EXCEEDED without running the
model (the session.run counter does not move), and a cancelled call leaves nothing behind (in-flight gauge
back to 0, batcher queue empty, no model run for it).

The servers here hold a lone request in the batcher with a long queue delay, always applied: a request then
waits there until its batch fills, its deadline passes or its client cancels.
"""

import random
import threading
import time
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fixtures.fakes import HANG_S, PausableModel, eventually
from fixtures.service_servers import connect, running_server
from service.adder_servicer import AdderServicer
from service.batcher import Batcher, BatcherState, Leave
from service.errors import Cancelled, DeadlineExceeded
from service.generated.adder.v1 import adder_pb2
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.http_calls import HttpContext
from service.inference_servicer import InferenceServicer
from service.metrics import Metrics
from service.rpc_watch import end_reason, rpc_watch

DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
HOLD = {"max_queue_delay_us": 30_000_000, "queue_delay_policy": "always"}


def runs(server, model="adder-sparse") -> float:
    """session.run calls so far for `model`."""
    return server.metrics.registry.get_sample_value("adder_inference_duration_seconds_count", {"model": model}) or 0


def recorded(server, method: str, code: str, model="adder-sparse") -> float:
    return server.metrics.registry.get_sample_value(
        "adder_request_duration_seconds_count",
        {"method": method, "model": model, "code": code, "protocol": "grpc"}) or 0


def inflight(server) -> float:
    return server.metrics.registry.get_sample_value("adder_inflight_requests")


def ended_unanswered(server) -> float:
    """Add calls the server counted as ended before their answer (deadline or cancel)."""
    return recorded(server, "Add", "DEADLINE_EXCEEDED") + recorded(server, "Add", "CANCELLED")


def leading(server, model="adder-sparse") -> bool:
    """A caller leads a batch in `model`'s batcher (the HOLD servers: it waits there to fill)."""
    return server.models.models[model].batcher.state().batch > 0


def assert_nothing_left(server, model="adder-sparse"):
    assert eventually(lambda: inflight(server) == 0), f"in-flight gauge stuck at {inflight(server)}"
    batcher = server.models.models[model].batcher
    assert eventually(lambda: batcher.state() == BatcherState(queued=0, batch=0, filling=False))


def full_batch(server) -> adder_pb2.AddBatchRequest:
    """A request of max_batch_size rows: runs at once, without waiting for the queue."""
    rows = server.config.max_batch_size
    return adder_pb2.AddBatchRequest(a=list(range(rows)), b=[1] * rows)


class _Aborted(Exception):
    pass


class ExpiredContext:
    """A servicer context whose deadline has already passed (a request that waited for a worker thread)."""

    def time_remaining(self):
        return -0.001

    def add_callback(self, callback):
        return True

    def abort(self, code, details):
        raise _Aborted(code, details)


class EndsAtDeadline:
    """A servicer context as grpc gives one for a client that sent `timeout`: the time left, and callbacks
    run when the RPC ends, which here is at its deadline (grpc's own timer), never before."""

    def __init__(self, timeout: float):
        self._expires = time.monotonic() + timeout
        self._callbacks = []
        self._lock = threading.Lock()
        self.ended = threading.Event()
        timer = threading.Timer(timeout, self._end)
        timer.daemon = True
        timer.start()

    def time_remaining(self):
        return max(0.0, self._expires - time.monotonic())

    def add_callback(self, callback):
        with self._lock:
            if self.ended.is_set():
                return False
            self._callbacks.append(callback)
            return True

    def _end(self):
        with self._lock:
            self.ended.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def abort(self, code, details):
        raise _Aborted(code, details)


@pytest.fixture(scope="module")
def held(fixture_repository):
    with running_server(fixture_repository, **HOLD) as server, connect(server.port) as client:
        yield server, client


def test_an_expired_deadline_never_reaches_the_model(held):
    server, _ = held
    adder = AdderServicer(server.config, server.models, server.metrics)
    inference = InferenceServicer(server.config, server.models, server.metrics)
    rows = server.config.max_batch_size  # a full batch would run at once, unqueued: checked before that too
    infer = pb.ModelInferRequest(model_name="adder-sparse")
    for name in ("a", "b"):
        infer.inputs.add(name=name, datatype="INT64", shape=[1])
        infer.raw_input_contents.append(np.array([5], "<i8").tobytes())
    calls = [(adder.Add, adder_pb2.AddRequest(a=1, b=2)),
             (adder.AddBatch, adder_pb2.AddBatchRequest(a=[1] * rows, b=[2] * rows)),
             (inference.ModelInfer, infer)]
    before = runs(server)
    for method, request in calls:
        with pytest.raises(_Aborted) as aborted:
            method(request, ExpiredContext())
        assert aborted.value.args == (DEADLINE, "deadline exceeded before model adder-sparse ran")
    assert runs(server) == before
    assert recorded(server, "AddBatch", "DEADLINE_EXCEEDED") == 1


def test_a_deadline_that_passes_while_waiting_for_a_worker_thread(fixture_repository):
    with running_server(fixture_repository, worker_threads=1, **HOLD) as server, connect(server.port) as client:
        first = client.adder.Add.future(adder_pb2.AddRequest(a=1, b=2), timeout=1.0)  # holds the only thread
        assert eventually(lambda: leading(server) or first.done())  # (a slow machine: its deadline came first)
        with pytest.raises(grpc.RpcError) as second:
            client.adder.Add(adder_pb2.AddRequest(a=3, b=4), timeout=0.2)
        assert second.value.code() == DEADLINE
        assert first.exception(timeout=HANG_S).code() == DEADLINE
        assert runs(server) == 0
        assert_nothing_left(server)
        assert list(client.adder.AddBatch(full_batch(server), timeout=HANG_S).sums) == list(range(1, 65))


def test_a_too_short_deadline_expires_in_the_batch_queue_without_a_model_run(held):
    """Over gRPC: the clients see DEADLINE_EXCEEDED, the model never runs, the server keeps nothing.

    The server's label for each (DEADLINE_EXCEEDED or CANCELLED) is not checked here: a client's own
    deadline reaches the server as a cancel, and whether that comes before the server's copy of the
    deadline passes is the machine's timing (service/rpc_watch.py). The next test checks the label.
    """
    server, client = held
    before, ended_before = runs(server), ended_unanswered(server)
    leader = client.adder.Add.future(adder_pb2.AddRequest(a=1, b=1), timeout=0.6)
    assert eventually(lambda: leading(server) or leader.done())  # (a slow machine: its deadline came first)
    followers = [client.adder.Add.future(adder_pb2.AddRequest(a=i, b=i), timeout=0.3) for i in range(3)]
    for call in (leader, *followers):
        assert call.exception(timeout=HANG_S).code() == DEADLINE
    assert eventually(lambda: ended_unanswered(server) == ended_before + 4)
    assert runs(server) == before
    assert_nothing_left(server)


def test_deadlines_that_pass_in_a_filling_batch_are_recorded_as_deadline_exceeded(held):
    """The servicer as gRPC drives it: each context's RPC ends at its deadline, never before (grpc's own
    timer), so the server alone decides; a leader and followers all leave with DEADLINE_EXCEEDED, counted
    so, and nothing runs, whichever of the batcher's timers or the RPC's end comes first."""
    server, _ = held
    adder = AdderServicer(server.config, server.models, server.metrics)
    before, exceeded = runs(server), recorded(server, "Add", "DEADLINE_EXCEEDED")
    outcomes = []

    def add(a: int, timeout: float) -> threading.Thread:
        def call():
            with pytest.raises(_Aborted) as aborted:
                adder.Add(adder_pb2.AddRequest(a=a, b=a), EndsAtDeadline(timeout))
            outcomes.append(aborted.value.args[0])

        thread = threading.Thread(target=call)
        thread.start()
        return thread

    threads = [add(1, 0.6)]
    assert eventually(lambda: leading(server) or not threads[0].is_alive())
    threads += [add(i, 0.3) for i in range(3)]
    for thread in threads:
        thread.join(HANG_S)
    assert outcomes == [DEADLINE] * 4
    assert recorded(server, "Add", "DEADLINE_EXCEEDED") == exceeded + 4
    assert runs(server) == before
    assert_nothing_left(server)


def test_cancelled_calls_leave_nothing_behind(held):
    server, client = held
    before, cancelled = runs(server), recorded(server, "Add", "CANCELLED")
    leader = client.adder.Add.future(adder_pb2.AddRequest(a=1, b=1))  # no deadline: would wait 30 s
    assert eventually(lambda: leading(server))
    followers = [client.adder.Add.future(adder_pb2.AddRequest(a=i, b=i)) for i in range(3)]
    batcher = server.models.models["adder-sparse"].batcher
    assert eventually(lambda: batcher.state().batch == 4)  # all four wait in the leader's filling batch
    for call in (followers[1], leader, followers[0], followers[2]):
        assert call.cancel()
    assert_nothing_left(server)
    assert eventually(lambda: recorded(server, "Add", "CANCELLED") == cancelled + 4)  # observed after the gauge
    assert runs(server) == before, "the model ran for a cancelled call"
    response = client.adder.AddBatch(full_batch(server), timeout=HANG_S)
    assert list(response.sums) == list(range(1, 65)) and client.status("") == "SERVING"


def test_cancellations_at_random_moments_under_concurrency(fixture_repository):
    """60 concurrent calls, a third cancelled at random moments: every answer right, nothing left behind."""
    rng = random.Random(0)
    with running_server(fixture_repository, max_queue_delay_us=3000, queue_delay_policy="always",
                        max_batch_size=8) as server, connect(server.port) as client:
        problems = [(rng.randrange(100), rng.randrange(100)) for _ in range(60)]
        calls = [client.adder.Add.future(adder_pb2.AddRequest(a=a, b=b), timeout=HANG_S) for a, b in problems]

        def cancel_some():
            for call in calls[::3]:
                time.sleep(rng.random() * 0.004)  # a random moment: before, during or after its batch
                call.cancel()

        canceller = threading.Thread(target=cancel_some)
        canceller.start()
        canceller.join(HANG_S)
        assert not canceller.is_alive()
        answered = 0
        for call, (a, b) in zip(calls, problems):
            if call.cancelled():
                continue
            assert call.result(timeout=HANG_S).sum == a + b
            answered += 1
        assert answered >= 40
        assert_nothing_left(server)
        wrong = server.metrics.registry.get_sample_value("adder_answers_total",
                                                         {"model": "adder-sparse", "correct": "false"})
        assert not wrong
        assert client.adder.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S).sum == 64


@pytest.mark.parametrize("time_left, reason", [(0.0, Leave.DEADLINE), (5.0, Leave.CANCELLED),
                                               (1e9, Leave.CANCELLED)])  # grpc's "no deadline"
def test_a_grpc_rpc_ends_for_its_deadline_only_when_that_has_passed(time_left, reason):
    assert end_reason(SimpleNamespace(time_remaining=lambda: time_left)) == reason
    assert end_reason(HttpContext(0.001)) == Leave.CANCELLED  # its end is always a disconnect


def test_a_watch_on_an_rpc_that_has_ended_already_calls_back_at_once():
    context = EndsAtDeadline(0.0)
    assert eventually(lambda: context.ended.is_set())
    reasons = []
    rpc_watch(context)(reasons.append)
    assert reasons == [Leave.DEADLINE]


def test_batcher_drops_followers_whose_rpc_ended_before_their_batch_ran():
    """Queued, taken into a batch still filling, or leading: each leaves at once for the reason its RPC
    ended, and is never run; a leader that leaves hands its batch to its oldest follower."""
    model = PausableModel()
    batcher = Batcher("m", model.run, Metrics(CollectorRegistry()), max_batch_size=4, max_queue_delay_s=3600.0)
    ends: dict[int, callable] = {}
    outcomes: dict[int, object] = {}

    def call(value: int):
        try:
            outcomes[value] = batcher.infer(np.array([value]), np.array([0]), None,
                                            lambda on_end: ends.setdefault(value, on_end)).sums.tolist()
        except (Cancelled, DeadlineExceeded) as error:
            outcomes[value] = error

    def start(value: int) -> threading.Thread:
        thread = threading.Thread(target=call, args=(value,))
        thread.start()
        assert eventually(lambda: value in ends)  # queued (or leading) before the next one starts
        return thread

    threads = [start(v) for v in (1, 2, 3, 4)]  # 1 leads; 2-4 fill its batch, which runs and pauses
    assert model.started.wait(HANG_S)
    threads += [start(v) for v in (5, 6, 7, 8)]  # queued behind the run
    ends[5](Leave.CANCELLED)  # queued: leaves the queue at once
    assert eventually(lambda: 5 in outcomes) and isinstance(outcomes[5], Cancelled)
    model.release.set()  # 1-4 answered; 6 leads, takes 7 and 8 and waits an hour for a fourth
    assert eventually(lambda: batcher.state() == BatcherState(queued=0, batch=3, filling=True))
    ends[7](Leave.DEADLINE)  # taken into a batch that has not started: leaves it at once
    assert eventually(lambda: 7 in outcomes) and isinstance(outcomes[7], DeadlineExceeded)
    ends[6](Leave.DEADLINE)  # the leader: leaves at once, 8 leads its batch on
    assert eventually(lambda: 6 in outcomes) and isinstance(outcomes[6], DeadlineExceeded)
    assert eventually(lambda: batcher.state() == BatcherState(queued=0, batch=1, filling=True))
    ends[8](Leave.CANCELLED)  # the leader, now alone: not run
    for thread in threads:
        thread.join(HANG_S)
    assert isinstance(outcomes[8], Cancelled)
    assert model.calls == [[1, 2, 3, 4]], "only the batch of live callers ran"
    assert [outcomes[v] for v in (1, 2, 3, 4)] == [[1], [2], [3], [4]]
    assert batcher.state() == BatcherState(queued=0, batch=0, filling=False)
