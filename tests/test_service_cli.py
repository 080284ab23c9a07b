"""The `sparse-adder` CLI against an in-process server: sums, trace pictures, circuit summaries, errors, plugins."""

import subprocess
import sys
from pathlib import Path

from service import cli

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_the_sum(server, capsys):
    assert run(capsys, "add", "36", "28", "--target", f"127.0.0.1:{server.port}") == (0, "64\n", "")


def test_add_trace_draws_the_active_edges(server, capsys):
    code, out, _ = run(capsys, "add", "12", "3", "--trace", "--target", f"127.0.0.1:{server.port}")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("12 + 3 = 15   answer 00015 from adder-sparse v1: 4 active attention edges")
    assert lines[2].split() == ["key", "1", "2", "+", "0", "3", "=", "0", "0", "0", "1"]
    # No carry: L0 H0 5<-1, L0 H1 6<-0, L1 H0 8<-4, L1 H0 9<-4 (see fixtures.service_repository).
    assert lines[4].split() == ["layer", "0", "q5", "'='", ".", "0", *"." * 8]
    assert lines[5].split() == ["q6", "'0'", "1", *"." * 9]
    assert lines[6].split() == ["layer", "1", "q8", "'0'", *"." * 4, "0", *"." * 5]
    assert lines[7].split() == ["q9", "'1'", *"." * 4, "0", *"." * 5]


def test_circuit_prints_the_summary(server, capsys):
    code, out, _ = run(capsys, "circuit", "--target", f"127.0.0.1:{server.port}")
    assert code == 0
    assert out.startswith("adder-sparse v1   sha256 ")
    assert "6 distinct over 10,000 problems, 220 possible per problem" in out
    assert "dead heads     L1H1" in out and "250 kept of 1,000 (25.0%)" in out
    assert "  L0   H0    5 =  <-  1 a2   100.00% " in out


def test_errors_go_to_stderr_with_the_status(server, capsys):
    code, out, err = run(capsys, "add", "100", "3", "--target", f"127.0.0.1:{server.port}")
    assert (code, out) == (1, "")
    assert err == "error: INVALID_ARGUMENT: a=100 is out of range: must be an integer in 0..99\n"


def test_subcommands_are_pluggable_and_missing_tools_are_skipped(tmp_path, monkeypatch):
    (tmp_path / "extra_tool.py").write_text(
        "def register(subparsers):\n"
        "    parser = subparsers.add_parser('hello')\n"
        "    parser.set_defaults(func=lambda args: 7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = cli.build_parser([*cli.COMMANDS, "extra_tool:register", "not_installed_tool.cli:register"])
    args = parser.parse_args(["hello"])
    assert args.func(args) == 7


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "service.cli", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "add" in result.stdout and "circuit" in result.stdout
