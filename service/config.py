"""Server configuration: defaults, overridden by ADDER_* environment variables, overridden by flags."""

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

QUEUE_DELAY_POLICIES = ("adaptive", "always")
MODEL_CONTROL_MODES = ("none", "explicit")


@dataclass(frozen=True)
class Config:
    model_repository: Path = Path("model_repository")
    host: str = "127.0.0.1"  # loopback unless asked: the container sets 0.0.0.0 explicitly
    grpc_port: int = 8001  # Triton's gRPC port; 0 picks a free one
    metrics_port: int = 8002  # Triton's metrics port; 0 picks a free one, -1 disables
    http_port: int = 8000  # Triton's HTTP/REST port (KServe v2 REST, /v1, the explorer); 0 any, -1 off
    max_batch_size: int = 64  # rows per session.run when coalescing; 1 turns dynamic batching off
    # Extra wait for a batch to fill (0 = take what is queued). Measured on 2 cores, 16 clients: 1 ms
    # doubled rows per run and raised throughput; "adaptive" keeps it off sequential requests.
    max_queue_delay_us: int = 1000
    queue_delay_policy: str = "adaptive"  # adaptive: wait only under concurrent traffic; always: Triton's rule
    intra_op_threads: int = 1  # ORT threads per session.run: 1 is fastest at small batches
    grace_seconds: float = 10.0  # SIGTERM: time allowed to finish in-flight requests
    max_request_batch: int = 10_000  # rows per AddBatch/ModelInfer call (the whole domain)
    worker_threads: int = 32  # gRPC handler threads per process: callers block here while their batch runs
    # Server processes sharing the gRPC and HTTP ports (SO_REUSEPORT), each with its own models and
    # batcher: Python runs one thread at a time, so one process uses about one core. 0: one per CPU the
    # process may use (the cgroup quota, i.e. a pod's CPU limit, else its CPU affinity).
    workers: int = 0
    log_level: str = "INFO"
    # Hardening (README "Reliability"): limits, TLS, where metrics listen.
    max_message_bytes: int = 4 * 1024 * 1024  # largest gRPC message received or sent (gRPC's receive default)
    max_concurrent_rpcs: int = 256  # RPCs in progress at once, health Watch streams included; 0: no limit
    tls_cert: str = ""  # PEM server certificate chain; with tls_key, gRPC and HTTP serve TLS only
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed (mutual TLS)
    metrics_host: str = ""  # address for /metrics; empty: the same as host
    # Triton's name: "explicit" lets any client call RepositoryModelLoad/Unload; SIGHUP reloads either way.
    model_control_mode: str = "none"


# Flag name -> (env var, type, help).
_OPTIONS = {
    "model_repository": ("ADDER_MODEL_REPOSITORY", Path, "model repository folder"),
    "host": ("ADDER_HOST", str, "address to bind gRPC, HTTP and metrics to"),
    "grpc_port": ("ADDER_GRPC_PORT", int, "gRPC port (0: any free port)"),
    "metrics_port": ("ADDER_METRICS_PORT", int, "Prometheus metrics HTTP port (0: any, -1: off)"),
    "http_port": ("ADDER_HTTP_PORT", int, "HTTP/REST port: KServe v2 REST, /v1 and the explorer page (0: any, -1: off)"),
    "max_batch_size": ("ADDER_MAX_BATCH_SIZE", int, "max rows coalesced into one session.run (1: no batching)"),
    "max_queue_delay_us": ("ADDER_MAX_QUEUE_DELAY_US", int, "max microseconds a request waits for a batch to fill"),
    "queue_delay_policy": ("ADDER_QUEUE_DELAY_POLICY", str,
                           "adaptive (wait only while the previous batch had several requests) or always"),
    "intra_op_threads": ("ADDER_INTRA_OP_THREADS", int, "onnxruntime intra-op threads per session"),
    "grace_seconds": ("ADDER_GRACE_SECONDS", float, "seconds to finish in-flight requests on SIGTERM"),
    "max_request_batch": ("ADDER_MAX_REQUEST_BATCH", int, "max rows in one AddBatch or ModelInfer request"),
    "worker_threads": ("ADDER_WORKER_THREADS", int, "gRPC handler threads per process"),
    "workers": ("ADDER_WORKERS", int, "server processes sharing the ports (0: one per CPU available)"),
    "log_level": ("ADDER_LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR"),
    "max_message_bytes": ("ADDER_MAX_MESSAGE_BYTES", int, "largest gRPC message received or sent, in bytes"),
    "max_concurrent_rpcs": ("ADDER_MAX_CONCURRENT_RPCS", int,
                            "RPCs in progress at once, more get RESOURCE_EXHAUSTED (0: no limit)"),
    "tls_cert": ("ADDER_TLS_CERT", str, "PEM certificate chain file: serve gRPC over TLS (with --tls-key)"),
    "tls_key": ("ADDER_TLS_KEY", str, "PEM private key file of --tls-cert"),
    "tls_client_ca": ("ADDER_TLS_CLIENT_CA", str, "PEM CA file: require client certificates it signed (mTLS)"),
    "metrics_host": ("ADDER_METRICS_HOST", str, "address to bind metrics to (empty: --host)"),
    "model_control_mode": ("ADDER_MODEL_CONTROL_MODE", str,
                           "none, or explicit to allow the RepositoryModelLoad/Unload RPCs (SIGHUP reloads either way)"),
}


def from_env(environ: Mapping[str, str]) -> Config:
    """Defaults overridden by the ADDER_* variables present in `environ`."""
    values = {}
    for name, (env, kind, _) in _OPTIONS.items():
        if env in environ:
            try:
                values[name] = kind(environ[env])
            except ValueError:
                raise SystemExit(f"{env}={environ[env]!r} is not a valid {kind.__name__}") from None
    return _checked(Config(**values))


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Flags over environment over defaults; read once at start-up and passed down explicitly."""
    base = from_env(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(prog="sparse-adder-server",
                                     description="Serve the adder models over gRPC and HTTP/REST.")
    for name, (env, kind, help_text) in _OPTIONS.items():
        default = getattr(base, name)
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                            help=f"{help_text} [env {env}, default {default}]")
    args = parser.parse_args(argv)
    return _checked(Config(**{f.name: getattr(args, f.name) for f in fields(Config)}))


def _checked(config: Config) -> Config:
    problems = [
        f"{name} must be >= {low}, got {getattr(config, name)}"
        for name, low in (("max_batch_size", 1), ("max_queue_delay_us", 0), ("intra_op_threads", 1),
                          ("grace_seconds", 0), ("max_request_batch", 1), ("worker_threads", 1),
                          ("grpc_port", 0), ("metrics_port", -1), ("http_port", -1), ("max_message_bytes", 1024),
                          ("max_concurrent_rpcs", 0), ("workers", 0))
        if getattr(config, name) < low
    ]
    if config.queue_delay_policy not in QUEUE_DELAY_POLICIES:
        problems.append(f"queue_delay_policy must be one of {', '.join(QUEUE_DELAY_POLICIES)}, "
                        f"got {config.queue_delay_policy!r}")
    if bool(config.tls_cert) != bool(config.tls_key):
        problems.append("tls_cert and tls_key go together: set both or neither")
    if config.tls_client_ca and not config.tls_cert:
        problems.append("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
    if config.model_control_mode not in MODEL_CONTROL_MODES:
        problems.append(f"model_control_mode must be one of {', '.join(MODEL_CONTROL_MODES)}, "
                        f"got {config.model_control_mode!r}")
    if problems:
        raise SystemExit("invalid configuration: " + "; ".join(problems))
    return config
