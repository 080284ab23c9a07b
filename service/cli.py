"""The `sparse-adder` client CLI: `add A B [--trace]`, `explain A B`, `circuit`, and any subcommand a plug-in registers.

A plug-in is a `register(subparsers)` function that adds a parser (use `parents=[common_options()]` for
--target/--timeout/--tls-*, and `open_channel(args)`) and sets `func=handler`, where `handler(args) -> int`
returns the exit code. It names itself in its package's metadata, entry-point group PLUGIN_GROUP
(pyproject.toml: `[project.entry-points."sparse_adder.commands"]`); the service names no plug-in.
Entries whose module is not installed are skipped, so the service image can omit tools.
"""

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

import grpc

from contract import DEFAULT_MODEL
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.picture import circuit_summary, explain_table, trace_picture
from service.tls import channel_credentials

COMMANDS = ["service.cli:register_add", "service.cli:register_explain", "service.cli:register_circuit"]
PLUGIN_GROUP = "sparse_adder.commands"
DEFAULT_TARGET = "127.0.0.1:8001"


def common_options() -> argparse.ArgumentParser:
    """--target, --timeout and TLS, shared by every subcommand that talks to a server."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--target", default=os.environ.get("ADDER_TARGET", DEFAULT_TARGET),
                        help=f"server host:port [env ADDER_TARGET, default {DEFAULT_TARGET}]")
    parent.add_argument("--timeout", type=float, default=10.0, help="seconds per RPC [default 10]")
    tls = parent.add_argument_group("TLS (any of these turns it on)")
    tls.add_argument("--tls", action="store_true", help="TLS, trusting the system's CAs")
    tls.add_argument("--tls-ca", metavar="PEM", default="", help="TLS, trusting this CA bundle")
    tls.add_argument("--tls-cert", metavar="PEM", default="", help="client certificate for mutual TLS")
    tls.add_argument("--tls-key", metavar="PEM", default="", help="private key of --tls-cert")
    return parent


def open_channel(args) -> grpc.Channel:
    """A channel to args.target: plaintext, or TLS when any --tls* option is given."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("error: --tls-cert and --tls-key go together")
    if args.tls or args.tls_ca or args.tls_cert:
        return grpc.secure_channel(args.target, channel_credentials(args.tls_ca, args.tls_cert, args.tls_key))
    return grpc.insecure_channel(args.target)


def register_add(subparsers) -> None:
    parser = subparsers.add_parser("add", parents=[common_options()], help="add two numbers 0..99 with the model",
                                   description="Print the model's sum; with --trace, the attention edges it used.")
    parser.add_argument("a", type=int)
    parser.add_argument("b", type=int)
    parser.add_argument("--model", default="", help=f"model name [default: the server's, {DEFAULT_MODEL}]")
    parser.add_argument("--trace", action="store_true", help="show the active attention edges of this sum")
    parser.set_defaults(func=_add)


def register_explain(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", parents=[common_options()], help="which attention edges an answer needs (sparse build)",
        description="Close each active attention edge alone, live on the server, and show which ones the answer needs.")
    parser.add_argument("a", type=int)
    parser.add_argument("b", type=int)
    parser.add_argument("--model", default="", help=f"model name [default: the server's, {DEFAULT_MODEL}]")
    parser.set_defaults(func=_explain)


def _explain(args) -> int:
    with open_channel(args) as channel:
        response = adder_pb2_grpc.AdderStub(channel).Explain(
            adder_pb2.ExplainRequest(a=args.a, b=args.b, model=args.model), timeout=args.timeout)
    print(explain_table(args.a, args.b, response))
    return 0


def register_circuit(subparsers) -> None:
    parser = subparsers.add_parser("circuit", parents=[common_options()], help="print a model's circuit summary")
    parser.add_argument("--model", default="", help=f"model name [default: the server's, {DEFAULT_MODEL}]")
    parser.add_argument("--limit", type=int, default=40, help="edges to list, most frequent first (0: all)")
    parser.set_defaults(func=_circuit)


def _add(args) -> int:
    with open_channel(args) as channel:
        stub = adder_pb2_grpc.AdderStub(channel)
        response = stub.Add(adder_pb2.AddRequest(a=args.a, b=args.b, model=args.model, trace=args.trace),
                            timeout=args.timeout)
        if not args.trace:
            print(response.sum)
            return 0
        # The circuit gives the picture its frame: layers without an active edge still get a row.
        circuit = stub.GetCircuit(adder_pb2.GetCircuitRequest(model=response.model), timeout=args.timeout)
    print(trace_picture(args.a, args.b, response, circuit.n_layers, circuit.n_positions or 10))
    return 0


def _circuit(args) -> int:
    with open_channel(args) as channel:
        response = adder_pb2_grpc.AdderStub(channel).GetCircuit(
            adder_pb2.GetCircuitRequest(model=args.model), timeout=args.timeout)
    print(circuit_summary(response, limit=args.limit or len(response.edges)))
    return 0


def plugin_commands() -> list[str]:
    """"module:function" of every installed plug-in, by entry-point name."""
    return [entry.value for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)]


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI with `commands` ("module:function" registrars; default: the built-ins and the plug-ins)."""
    parser = argparse.ArgumentParser(prog="sparse-adder", description="Talk to a sparse-adder server.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMANDS + plugin_commands() if commands is None else commands:
        module_name, function = entry.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # an optional tool that is not installed here
            raise
        getattr(module, function)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
