"""The one client every server is measured with: a worker process driving tritonclient[grpc] ModelInfer.

Run as `python -m bench.peers.driver` by bench/peers/client_pool.py: it reads one JSON request per
line on stdin and writes one JSON answer per line on stdout. Requests: {"op": "ping"},
{"op": "ready", target, model, timeout_s} and {"op": "run", **Job fields}.

Its own process because tritonclient's compiled service_pb2 and our service.generated `inference.*`
protos cannot share one protobuf descriptor pool ("duplicate symbol"): nothing here imports service/.
tritonclient itself is imported only inside the functions that call servers, so the answer check
below can be imported (and tested) anywhere.
"""

import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

OPERAND_LOW, OPERAND_HIGH = 0, 99  # the task's operands (contract: OPERAND_MIN..OPERAND_MAX)
PAIRS_PER_THREAD = 256  # distinct random problems each thread cycles through


class WrongAnswer(AssertionError):
    """A server answered a sum other than a + b: the run must fail, not report a speed."""


def check_sums(a: np.ndarray, b: np.ndarray, sums) -> None:
    """Raise WrongAnswer unless `sums` is exactly a + b, element by element."""
    expected = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    got = None if sums is None else np.asarray(sums)
    if got is None or got.shape != expected.shape or not np.array_equal(got, expected):
        shown = None if got is None else got.tolist()
        raise WrongAnswer(f"{np.asarray(a).tolist()} + {np.asarray(b).tolist()}: expected "
                          f"{expected.tolist()}, the server answered {shown}")


@dataclass(frozen=True)
class Job:
    """One process's share of a measurement: `threads` closed-loop clients, one pair per ModelInfer."""
    target: str
    model: str
    inputs: list  # [[name, datatype], [name, datatype]]: the manifest's two operand tensors
    output: str  # the manifest's sum tensor, the only output asked for
    threads: int
    calls_per_thread: int
    start_at: float  # time.time() at which every thread starts measuring (after its warm-up)
    stop_at: float  # time.time() after which no thread starts a new call
    warmup_calls: int = 5
    timeout_s: float = 10.0
    seed: int = 0


def _caller(job: Job, index: int):
    """A function making one checked ModelInfer call on this thread's own client (own connection)."""
    import tritonclient.grpc as triton
    from tritonclient.utils import triton_to_np_dtype

    # Its own connection, as 16 separate clients would have: gRPC otherwise shares one connection between
    # a process's channels, and a server with several worker processes (or any L4 balancer) spreads
    # connections, not calls.
    client = triton.InferenceServerClient(url=job.target, channel_args=[("grpc.use_local_subchannel_pool", 1)])
    rng = np.random.default_rng([job.seed, index])
    requested = [triton.InferRequestedOutput(job.output)]
    problems = []
    for a, b in rng.integers(OPERAND_LOW, OPERAND_HIGH + 1, size=(PAIRS_PER_THREAD, 2)):
        tensors = []
        for (name, datatype), value in zip(job.inputs, (a, b)):
            tensor = triton.InferInput(name, [1], datatype)
            tensor.set_data_from_numpy(np.array([value], dtype=triton_to_np_dtype(datatype)))
            tensors.append(tensor)
        problems.append((tensors, np.array([a]), np.array([b])))
    cycle = itertools.cycle(problems)

    def call() -> None:
        tensors, a, b = next(cycle)
        result = client.infer(job.model, tensors, outputs=requested, client_timeout=job.timeout_s)
        check_sums(a, b, result.as_numpy(job.output))
    return call


def _thread(job: Job, index: int, out: dict, failed: threading.Event) -> None:
    try:
        call = _caller(job, index)
        for _ in range(job.warmup_calls):
            call()
        time.sleep(max(0.0, job.start_at - time.time()))
        latencies, started = [], time.time()
        for _ in range(job.calls_per_thread):
            if failed.is_set() or time.time() >= job.stop_at:
                break
            begin = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - begin)
        out[index] = {"latencies": latencies, "started": started, "ended": time.time()}
    except Exception as error:  # an RPC error or a wrong answer: stop every thread, report the first
        failed.set()
        out[index] = {"failure": f"{type(error).__name__}: {error}"}


def run_job(**fields) -> dict:
    """Latencies (seconds) of every thread, the measured window (wall clock), or the first failure."""
    job = Job(**fields)
    out: dict[int, dict] = {}
    failed = threading.Event()
    threads = [threading.Thread(target=_thread, args=(job, i, out, failed)) for i in range(job.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [part["failure"] for part in out.values() if "failure" in part]
    if failures:
        return {"failure": failures[0]}
    parts = list(out.values())
    return {"latencies": [x for part in parts for x in part["latencies"]],
            "started": min(part["started"] for part in parts), "ended": max(part["ended"] for part in parts)}


def ready(target: str, model: str, timeout_s: float) -> dict:
    """ServerReady and ModelReady over gRPC: is this server up and serving `model`?"""
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=target)
    try:
        up = client.is_server_ready(client_timeout=timeout_s) and client.is_model_ready(model, client_timeout=timeout_s)
        return {"ready": bool(up)}
    except InferenceServerException as error:
        return {"ready": False, "why": str(error)}
    finally:
        client.close()


def ping() -> dict:
    import tritonclient.grpc  # noqa: F401  (imported before any timing)
    return {"pong": True}


OPS = {"ping": ping, "ready": ready, "run": run_job}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = OPS[request.pop("op")](**request)
        except Exception as error:  # a bad request: answered, so the pool never waits for nothing
            answer = {"failure": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
