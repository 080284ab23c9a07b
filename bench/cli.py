"""Arguments of `sparse-adder bench` / `python -m bench`; `register` is the plug-in pyproject.toml names for service/cli.py
(it adds `sparse-adder bench-peers` too, from bench/peers/cli.py)."""

import argparse
import os
import sys
from collections.abc import Sequence

from contract import MODELS

DEFAULT_OUT = "bench_results"


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("what to measure")
    where.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"),
                       help="model repository (in-process runs, and the servers the bench starts) "
                            "[env ADDER_MODEL_REPOSITORY, default model_repository]")
    where.add_argument("--target", default="",
                       help="measure this running server (host:port) instead of starting two "
                            "(batching on and off); the batching comparison is then n/a")
    where.add_argument("--http-target", default="",
                       help="with --target: the server's HTTP/REST host:port, for the Add-HTTP rows")
    where.add_argument("--out", default=DEFAULT_OUT, help=f"directory for bench.json, summary.txt and the PNGs "
                                                          f"[default {DEFAULT_OUT}]")
    where.add_argument("--models", default=",".join(MODELS), help="comma-separated builds [default both]")
    where.add_argument("--skip-inprocess", action="store_true", help="only the end-to-end part")
    where.add_argument("--skip-e2e", action="store_true", help="only the in-process part")
    where.add_argument("--skip-http", action="store_true", help="no Add-HTTP rows (Add over HTTP/REST)")
    ort = parser.add_argument_group("in-process (ONNX Runtime)")
    ort.add_argument("--batch-sizes", type=_ints, default=[1, 16, 256, 1024], help="default 1,16,256,1024")
    ort.add_argument("--intra-op-threads", type=int, default=1,
                     help="ORT threads, in-process and in the servers the bench starts [default 1]")
    ort.add_argument("--pairs", type=int, default=300, help="max dense+sparse pairs per batch size [default 300]")
    ort.add_argument("--warmup", type=int, default=20, help="warm-up runs per build and batch size [default 20]")
    e2e = parser.add_argument_group("end to end (gRPC, and Add over HTTP/REST)")
    e2e.add_argument("--concurrency", type=_ints, default=[1, 4, 16, 64], help="clients [default 1,4,16,64]")
    e2e.add_argument("--calls", type=int, default=3000, help="max calls per scenario, all clients [default 3000]")
    e2e.add_argument("--client-processes", type=int, default=4,
                     help="worker processes the clients are spread over (threads within each) [default 4]")
    e2e.add_argument("--max-batch-size", type=int, default=64, help="the batching server's setting [default 64]")
    e2e.add_argument("--batch-rows", type=int, default=1024, help="rows per AddBatch call [default 1024]")
    e2e.add_argument("--batch-calls", type=int, default=100, help="max AddBatch calls per build [default 100]")
    e2e.add_argument("--client-warmup", type=int, default=5, help="warm-up calls per client thread [default 5]")
    e2e.add_argument("--timeout", type=float, default=10.0, help="seconds per RPC [default 10]")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--step-seconds", type=float, default=8.0,
                        help="max seconds of measuring per batch size or scenario [default 8]")
    limits.add_argument("--time-limit", type=float, default=900.0,
                        help="whole run: steps that would start later are skipped [default 900]")
    limits.add_argument("--counts-only", action="store_true",
                        help="no time limits: every step runs its full counts (--pairs, --calls, "
                             "--batch-calls), however long that takes; what a run does is then the same "
                             "on any machine")
    limits.add_argument("--seed", type=int, default=0)


def register(subparsers) -> None:
    """`sparse-adder bench`: the `sparse_adder.commands` entry point (see service/cli.py)."""
    parser = subparsers.add_parser("bench", help="measure dense vs sparse: ORT in-process and over gRPC",
                                   description="Benchmark the dense and sparse builds: in-process ONNX Runtime "
                                               "and end to end over gRPC; writes a table, JSON and PNG plots.")
    add_arguments(parser)
    parser.set_defaults(func=_run)
    # Its own subcommand, not `bench --peers`: it shares few of bench's options and has its own.
    from bench.peers.cli import register as register_peers
    register_peers(subparsers)


def _run(args) -> int:
    from bench.run import run  # the measuring code loads only when the subcommand runs
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the dense and sparse builds.")
    add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
