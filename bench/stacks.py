"""Read py-spy's raw (collapsed) stacks and `perf report` lines, and sort the samples into named parts.

A py-spy raw line is `frame;frame;...;frame count`, root first, each frame `function (file:line)`. A
sample goes to the part of its innermost frame that names one (the file decides); a stack with none
goes to a gRPC part by the functions on it. So the model's run inside the batcher counts as the
model's, the batcher's lock wait as the batcher's, a metric observed in the handler as metrics.
"""

from collections import Counter
from dataclasses import dataclass

# (part, file prefixes) in no particular order: the innermost matching frame decides.
FILE_PARTS = (
    ("ORT session.run", ("onnxruntime/",)),
    ("metrics (prometheus_client, service/metrics.py)", ("prometheus_client/", "service/metrics.py")),
    ("logging", ("logging/", "service/logs.py")),
    ("validation (service/validation.py, tensors.py)", ("service/validation.py", "service/tensors.py")),
    ("batcher (service/batcher.py)", ("service/batcher.py",)),
    ("rpc wrapper (errors, decoding, rpc_watch, handlers)",
     ("service/errors.py", "service/decoding.py", "service/rpc_watch.py", "service/handlers.py")),
    ("handler + response building (servicers, models, runtime)",
     ("service/adder_servicer.py", "service/inference_servicer.py", "service/models.py", "service/runtime.py")),
    ("health servicer (grpc_health)", ("grpc_health/",)),
    ("HTTP/REST loop (idle here)", ("service/http_server.py", "uvicorn/", "asyncio/")),
)
# Stacks with no such frame, by a function on them (checked in this order).
FUNCTION_PARTS = (
    ("gRPC poll loop (_serve: completion queue, call set-up)", "_serve (grpc/_server.py"),
    ("gRPC call in a worker (_server.py: receive, status, send)", "grpc/_server.py"),
    ("thread pool hand-off (concurrent.futures)", "concurrent/futures/"),
)
OTHER = "other"


def _file_of(frame: str) -> str:
    """`Batcher.infer (service/batcher.py:138)` -> `service/batcher.py`."""
    inside = frame[frame.rfind("(") + 1:].rstrip(")")
    return inside.rsplit(":", 1)[0]


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        file = _file_of(frame)
        for part, prefixes in FILE_PARTS:
            if file.startswith(prefixes):
                return part
    joined = ";".join(frames)
    for part, marker in FUNCTION_PARTS:
        if marker in joined:
            return part
    return OTHER


@dataclass
class Profile:
    samples: int
    parts: Counter  # part -> samples
    leaves: Counter  # innermost frame -> samples (self time)


def read_raw(text: str) -> Profile:
    parts, leaves, total = Counter(), Counter(), 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        total += n
        parts[part_of(frames)] += n
        leaves[frames[-1] if frames else OTHER] += n
    return Profile(total, parts, leaves)


def read_perf_dsos(report: str) -> Counter:
    """`perf report --sort dso --stdio` -> {shared object: percent}."""
    shares: Counter = Counter()
    for line in report.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].endswith("%") and not line.lstrip().startswith("#"):
            try:
                shares[" ".join(fields[1:])] += float(fields[0].rstrip("%"))
            except ValueError:
                continue
    return shares


# Shared objects by what they are, for the C-level view.
DSO_PARTS = (
    ("gRPC C-core (cygrpc)", ("cygrpc",)),
    ("ONNX Runtime", ("onnxruntime",)),
    ("Python interpreter", ("libpython", "python3")),
    ("protobuf (upb)", ("_message",)),
    ("numpy", ("_multiarray", "numpy")),
    ("kernel (syscalls, network, scheduling)", ("[kernel", "kernel")),
    ("libc / libstdc++ / libm", ("libc.", "libc-", "libstdc++", "libm.", "libpthread", "ld-linux")),
)


def dso_part(dso: str) -> str:
    for part, markers in DSO_PARTS:
        if any(m in dso for m in markers):
            return part
    return f"other ({dso})"
