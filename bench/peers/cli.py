"""Arguments of `python -m bench.peers` / `sparse-adder bench-peers` (registered by bench/cli.py)."""

import argparse
import os
import sys
from collections.abc import Sequence

from bench.peers import PEERS
from contract import SPARSE_MODEL

DEFAULT_OUT = "bench_results/peers"
DESCRIPTION = ("Our server beside KServe and MLServer: the same ONNX file, one gRPC client (tritonclient, "
               "ModelInfer), interleaved rounds; writes ratios ours/peer as Markdown, JSON and PNG.")


def _names(allowed: Sequence[str] | None = None):
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [n for n in names if allowed is not None and n not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed or [])}, "
                                             f"got {text!r}")
        return names
    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to measure")
    what.add_argument("--peers", type=_names(PEERS), default=list(PEERS), help="default kserve,mlserver")
    what.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"),
                      help="model repository [env ADDER_MODEL_REPOSITORY, default model_repository]")
    what.add_argument("--models", type=_names(), default=[SPARSE_MODEL], help=f"builds measured [default {SPARSE_MODEL}]")
    what.add_argument("--out", default=DEFAULT_OUT, help=f"directory for peers.md, peers.json, the PNG and logs "
                                                         f"[default {DEFAULT_OUT}]")
    ours = parser.add_argument_group("our server")
    ours.add_argument("--max-batch-size", type=_positive, default=64, help="default 64")
    ours.add_argument("--intra-op-threads", type=_positive, default=1, help="ORT threads, every server [default 1]")
    ours.add_argument("--workers", type=_positive, default=None,
                      help="our server's --workers N (passed only when given and not 1)")
    ours.add_argument("--server-args", default="", help="more arguments for our server, one shell-quoted string")
    load = parser.add_argument_group("clients and limits")
    load.add_argument("--rounds", type=_positive, default=5, help="interleaved rounds [default 5]")
    load.add_argument("--seconds", type=float, default=5.0, help="max seconds per measurement [default 5]")
    load.add_argument("--calls", type=_positive, default=100_000, help="max calls per measurement [default 100000]")
    load.add_argument("--clients", type=_positive, default=16, help="clients of the concurrent scenario [default 16]")
    load.add_argument("--client-processes", type=_positive, default=4,
                      help="processes the clients are spread over, threads within each [default 4]")
    load.add_argument("--client-warmup", type=int, default=5, help="warm-up calls per client thread [default 5]")
    load.add_argument("--timeout", type=float, default=10.0, help="seconds per RPC [default 10]")
    load.add_argument("--start-timeout", type=float, default=300.0,
                      help="seconds a server may take to become ready [default 300]")
    load.add_argument("--time-limit", type=float, default=1800.0,
                      help="whole run: a round that would start later is skipped (round 1 always runs) "
                           "[default 1800]")
    load.add_argument("--seed", type=int, default=0)


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench-peers", help="our server vs KServe and MLServer on the same ONNX file",
                                   description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from bench.peers.run import run  # the measuring code (and its servers) load only when it runs
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=DESCRIPTION)
    add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
