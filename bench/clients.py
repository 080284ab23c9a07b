"""Closed-loop clients (gRPC, and HTTP/REST for Add-HTTP), run inside worker processes: each thread sends
one call, waits, sends the next."""

# A Job is one process's share of a scenario. Threads of one process share one channel (as a real
# client would) and start together at `start_at` (wall clock, so processes line up), after a warm-up.

import http.client
import json
import threading
import time
from dataclasses import dataclass

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.generated.inference import grpc_predict_v2_pb2_grpc

ADD, ADD_BATCH, CHECK = "Add", "AddBatch", "Check"
MODEL_INFER = "ModelInfer"  # KServe v2 ModelInfer, one problem as raw INT64 inputs, every output back
ADD_HTTP = "Add-HTTP"  # Add as GET /v1/add on the server's HTTP port: the same handler and batcher as gRPC's


class HttpCallError(Exception):
    """An HTTP answer other than 200, or a broken connection."""


@dataclass(frozen=True)
class Job:
    target: str
    method: str  # Add | AddBatch | Check | ModelInfer | Add-HTTP
    model: str  # "" for Check
    threads: int
    calls_per_thread: int
    start_at: float  # time.time() at which every thread starts measuring
    stop_at: float  # time.time() after which no thread starts a new call
    warmup_calls: int = 3
    rows: int = 1  # AddBatch rows per call
    timeout_s: float = 10.0
    seed: int = 0
    http_target: str = ""  # host:port of the server's HTTP/REST port (Add-HTTP)


def _caller(job: Job, channel: grpc.Channel, rng: np.random.Generator):
    """A function making one call; it returns False when the answer is wrong."""
    if job.method == CHECK:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        return lambda: stub.Check(request, timeout=job.timeout_s).status == health_pb2.HealthCheckResponse.SERVING
    if job.method == ADD_HTTP:
        return _http_add(job, rng)
    if job.method == MODEL_INFER:
        return _model_infer(job, channel, rng)
    stub = adder_pb2_grpc.AdderStub(channel)
    if job.method == ADD_BATCH:
        a, b = rng.integers(0, 100, size=(2, job.rows))
        request = adder_pb2.AddBatchRequest(a=a.tolist(), b=b.tolist(), model=job.model)
        expected = (a + b).tolist()
        return lambda: list(stub.AddBatch(request, timeout=job.timeout_s).sums) == expected
    pairs = [(int(x), int(y)) for x, y in rng.integers(0, 100, size=(64, 2))]
    requests = [(adder_pb2.AddRequest(a=x, b=y, model=job.model), x + y, f"{x + y:05d}") for x, y in pairs]
    counter = iter(range(1 << 62))

    def add() -> bool:
        request, expected, answer = requests[next(counter) % len(requests)]
        response = stub.Add(request, timeout=job.timeout_s)
        return response.sum == expected and response.answer == answer
    return add


def infer_request(model: str, a: int, b: int) -> pb.ModelInferRequest:
    """One problem as a Triton client sends it: raw little-endian INT64 inputs, no outputs named (all)."""
    request = pb.ModelInferRequest(model_name=model)
    for name, value in (("a", a), ("b", b)):
        request.inputs.add(name=name, datatype="INT64", shape=[1])
        request.raw_input_contents.append(np.array([value], dtype="<i8").tobytes())
    return request


def _model_infer(job: Job, channel: grpc.Channel, rng: np.random.Generator):
    stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
    pairs = [(int(x), int(y)) for x, y in rng.integers(0, 100, size=(64, 2))]
    requests = [(infer_request(job.model, x, y), x + y) for x, y in pairs]
    counter = iter(range(1 << 62))

    def infer() -> bool:
        request, expected = requests[next(counter) % len(requests)]
        response = stub.ModelInfer(request, timeout=job.timeout_s)
        return int(np.frombuffer(response.raw_output_contents[0], dtype="<i8")[0]) == expected
    return infer


def _http_add(job: Job, rng: np.random.Generator):
    """GET /v1/add over one keep-alive connection per thread, as a pooled HTTP client would."""
    host, _, port = job.http_target.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=job.timeout_s)
    pairs = [(int(x), int(y)) for x, y in rng.integers(0, 100, size=(64, 2))]
    paths = [(f"/v1/add?a={x}&b={y}&model={job.model}", x + y, f"{x + y:05d}") for x, y in pairs]
    counter = iter(range(1 << 62))

    def add() -> bool:
        path, expected, answer = paths[next(counter) % len(paths)]
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as error:
            connection.close()  # the next request reconnects
            raise HttpCallError(f"{type(error).__name__}: {error}") from None
        if response.status != 200:
            raise HttpCallError(f"HTTP {response.status}: {body.get('error', '')}")
        return body["sum"] == expected and body["answer"] == answer
    return add


def _thread(job: Job, channel: grpc.Channel, index: int, out: dict) -> None:
    call = _caller(job, channel, np.random.default_rng([job.seed, index]))
    errors, wrong, first_error = 0, 0, ""
    for _ in range(job.warmup_calls):
        try:
            call()
        except (grpc.RpcError, HttpCallError):
            pass
    time.sleep(max(0.0, job.start_at - time.time()))
    latencies = []
    started = time.time()
    for _ in range(job.calls_per_thread):
        if time.time() >= job.stop_at:
            break
        begin = time.perf_counter()
        try:
            right = call()
        except grpc.RpcError as error:
            errors += 1
            first_error = first_error or f"{error.code().name}: {error.details()}"
            continue
        except HttpCallError as error:
            errors += 1
            first_error = first_error or str(error)
            continue
        latencies.append(time.perf_counter() - begin)
        wrong += not right
    out[index] = {"latencies": latencies, "started": started, "ended": time.time(), "errors": errors,
                  "wrong": wrong, "first_error": first_error}


def run_job(job: Job) -> dict:
    """Run one process's threads; latencies in seconds, started/ended as wall-clock times."""
    out: dict[int, dict] = {}
    with grpc.insecure_channel(job.target) as channel:
        threads = [threading.Thread(target=_thread, args=(job, channel, i, out)) for i in range(job.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    parts = list(out.values())
    return {"latencies": [x for p in parts for x in p["latencies"]],
            "started": min(p["started"] for p in parts), "ended": max(p["ended"] for p in parts),
            "errors": sum(p["errors"] for p in parts), "wrong": sum(p["wrong"] for p in parts),
            "first_error": next((p["first_error"] for p in parts if p["first_error"]), "")}


def ping() -> int:
    """A no-op run at pool start so worker processes have imported grpc before any timing."""
    return 1
