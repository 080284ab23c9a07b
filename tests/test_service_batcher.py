"""The dynamic batcher: coalescing, size limit, deadlines, errors, close; driven by a fake model we can pause."""

import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fixtures.fakes import HANG_S, PausableModel, eventually
from service.batcher import Batcher, BatcherState
from service.errors import DeadlineExceeded, Unavailable
from service.metrics import Metrics


def make(model, max_batch_size=8, delay=1e-6, adaptive=False):
    # A (tiny) queue delay: the leader waits for more, so batching is exercised even when idle.
    metrics = Metrics(CollectorRegistry())
    return Batcher("m", model.run, metrics, max_batch_size, delay, adaptive), metrics


def submit(batcher, values, results, timeout=None):
    def call():
        try:
            results[values[0]] = batcher.infer(np.array(values), np.array(values), timeout).sums.tolist()
        except Exception as error:  # recorded for the assertions
            results[values[0]] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def wait_queued(batcher, n):
    assert eventually(lambda: batcher.state().queued >= n), f"{n} requests never queued: {batcher.state()}"


def join(*threads):
    for t in threads:
        t.join(HANG_S)
        assert not t.is_alive()


def test_concurrent_requests_share_one_run_and_get_their_own_rows():
    model = PausableModel()
    batcher, metrics = make(model)
    results = {}
    threads = [submit(batcher, [1], results)]
    assert model.started.wait(HANG_S)
    threads += [submit(batcher, [v, v + 1], results) for v in (10, 20, 30)]
    wait_queued(batcher, 3)
    model.release.set()
    join(*threads)
    assert len(model.calls) == 2 and sorted(model.calls[1]) == [10, 11, 20, 21, 30, 31]
    assert results == {1: [2], 10: [20, 22], 20: [40, 42], 30: [60, 62]}
    assert metrics.registry.get_sample_value("adder_batch_size_sum", {"model": "m"}) == 7
    assert metrics.registry.get_sample_value("adder_inference_duration_seconds_count", {"model": "m"}) == 2
    batcher.close()


def test_batches_never_exceed_max_rows():
    model = PausableModel()
    batcher, _ = make(model, max_batch_size=4)
    results = {}
    threads = [submit(batcher, [0], results)]
    assert model.started.wait(HANG_S)
    threads += [submit(batcher, [v], results) for v in range(1, 7)]
    wait_queued(batcher, 6)
    model.release.set()
    join(*threads)
    assert [len(c) for c in model.calls] == [1, 4, 2]
    assert results == {v: [2 * v] for v in range(7)}
    batcher.close()


def test_a_request_past_its_deadline_is_dropped_not_run():
    model = PausableModel()
    batcher, _ = make(model)
    results = {}
    first = submit(batcher, [1], results)
    assert model.started.wait(HANG_S)
    late = submit(batcher, [5], results, timeout=0.05)  # queued behind the paused run until its deadline
    join(late)
    assert isinstance(results[5], DeadlineExceeded)
    model.release.set()
    join(first)
    batcher.close()
    assert model.calls == [[1]]  # the abandoned rows were never computed


def test_no_batching_and_big_requests_run_on_the_callers_thread():
    model = PausableModel(pause_first=False)
    batcher, _ = make(model, max_batch_size=1)
    assert batcher.infer(np.array([2]), np.array([3])).sums.tolist() == [5]
    batched, _ = make(model, max_batch_size=4)
    assert batched.infer(np.arange(4), np.arange(4)).sums.tolist() == [0, 2, 4, 6]
    assert model.calls == [[2], [0, 1, 2, 3]]
    batched.close()


def test_a_failing_run_fails_every_caller_in_the_batch():
    def broken(a, b):
        raise RuntimeError("boom")

    batcher = Batcher("m", broken, Metrics(CollectorRegistry()), 8, 0.0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.infer(np.array([1]), np.array([1]), 10)
    batcher.close()


def test_drain_runs_a_waiting_batch_at_once_and_close_refuses_later_requests():
    model = PausableModel()
    batcher, _ = make(model)
    results = {}
    first = submit(batcher, [1], results)
    assert model.started.wait(HANG_S)
    batcher._delay = 3600.0  # from now on a batch waits an hour to fill: only drain can let it go
    second = submit(batcher, [2], results)
    wait_queued(batcher, 1)  # queued behind the paused run
    model.release.set()
    join(first)
    # [2] was handed the lead and waits for its batch to fill
    assert eventually(lambda: batcher.state() == BatcherState(queued=0, batch=1, filling=True))
    assert len(model.calls) == 1 and second.is_alive()
    batcher.drain()
    join(second)
    assert results == {1: [2], 2: [4]}
    batcher.close()
    with pytest.raises(Unavailable):
        batcher.infer(np.array([1]), np.array([1]))


def test_without_queue_delay_an_idle_model_runs_at_once_and_a_busy_one_batches_on_a_callers_thread():
    model = PausableModel()
    batcher, _ = make(model, delay=0.0)
    results = {}
    first = submit(batcher, [1], results)  # idle: it leads, runs alone on its own thread, paused
    assert model.started.wait(HANG_S)
    threads = [submit(batcher, [v], results) for v in (2, 3, 4)]
    wait_queued(batcher, 3)  # busy: they queue behind the paused run
    model.release.set()
    join(first, *threads)
    assert results == {1: [2], 2: [4], 3: [6], 4: [8]}
    assert model.calls == [[1], [2, 3, 4]]  # the next caller in line led the second batch
    assert model.threads[1] == threads[0].name  # no batcher thread: a caller ran it
    batcher.close()


def test_a_caller_whose_deadline_passes_while_leading_alone_is_not_run():
    model = PausableModel(pause_first=False)
    batcher, _ = make(model, delay=3600.0)  # a lone leader would wait an hour for the batch to fill
    with pytest.raises(DeadlineExceeded):
        batcher.infer(np.array([1]), np.array([1]), 0.05)
    assert model.calls == []
    assert batcher.infer(np.arange(8), np.arange(8)).sums.tolist() == list(range(0, 16, 2))  # full: no wait
    batcher.close()


def test_adaptive_delay_spares_a_lone_caller_and_waits_after_a_batch_of_several():
    # An hour's delay: a caller that waited for company would outlive every bound below, so the test
    # tells waiting from not waiting by what ran together and by the batcher's state, never by timing a call.
    model = PausableModel()
    batcher, _ = make(model, max_batch_size=2, delay=3600.0, adaptive=True)
    results = {}
    first = submit(batcher, [1], results)  # lone: runs at once
    assert model.started.wait(HANG_S)
    threads = [submit(batcher, [v], results) for v in (2, 3)]
    wait_queued(batcher, 2)
    model.release.set()  # [2, 3] run as a batch of two callers: traffic is concurrent now
    join(first, *threads)
    assert model.calls == [[1], [2, 3]]
    waiting = submit(batcher, [4], results)  # after a batch of several: waits for company
    assert eventually(lambda: batcher.state() == BatcherState(queued=0, batch=1, filling=True))
    assert model.calls == [[1], [2, 3]] and waiting.is_alive()
    company = submit(batcher, [5], results)
    join(waiting, company)
    assert sorted(model.calls[2]) == [4, 5] and results[4] == [8] and results[5] == [10]
    with pytest.raises(DeadlineExceeded):  # waits again, alone, until its deadline: a batch of one caller
        batcher.infer(np.array([6]), np.array([6]), 0.1)
    alone = submit(batcher, [7], results)  # after a batch of one caller: no wait (else an hour)
    join(alone)
    assert results[7] == [14] and model.calls[-1] == [7]
    batcher.close()


def test_a_follower_whose_deadline_passes_in_a_filling_batch_leaves_it_unrun():
    """HTTP's timeout_ms: the batcher's own timer takes a follower out of a batch that has not started."""
    model = PausableModel(pause_first=False)
    batcher, _ = make(model, delay=3600.0)  # only drain ends the filling
    results = {}
    leader = submit(batcher, [1], results)
    assert eventually(lambda: batcher.state().filling)
    late = submit(batcher, [2], results, timeout=0.2)  # taken into the batch, then its deadline passes
    join(late)
    assert isinstance(results[2], DeadlineExceeded)
    batcher.drain()
    join(leader)
    assert model.calls == [[1]] and results[1] == [2]
    batcher.close()


def test_a_leader_whose_deadline_passes_leaves_and_its_followers_still_run_together():
    model = PausableModel(pause_first=False)
    batcher, _ = make(model, delay=3600.0)
    results = {}
    leader = submit(batcher, [1], results, timeout=0.5)
    followers = [submit(batcher, [v], results) for v in (2, 3)]
    join(leader)
    assert isinstance(results[1], DeadlineExceeded)
    # its followers wait on in one batch (led on by the oldest of them), never run early by its leaving
    assert eventually(lambda: batcher.state() == BatcherState(queued=0, batch=2, filling=True))
    assert model.calls == []
    batcher.drain()
    join(*followers)
    assert model.calls == [[2, 3]] and (results[2], results[3]) == ([4], [6])
    batcher.close()
