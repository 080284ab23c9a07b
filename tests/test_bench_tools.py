"""bench.requestpath runs end to end with tiny counts, and bench.stacks sorts samples (no time is asserted)."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.stacks import OTHER, dso_part, part_of, read_perf_dsos, read_raw

ROOT = Path(__file__).resolve().parents[1]


def test_requestpath_prints_and_writes_the_three_ratios(measured_repository, tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.requestpath", "--repository", str(measured_repository),
                             "--out", str(tmp_path), "--rounds", "2", "--calls", "3", "--warmup", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)  # a hang bound
    assert result.returncode == 0, result.stdout + result.stderr
    targets = json.loads((tmp_path / "requestpath.json").read_text())["targets"]
    assert [t["name"] for t in targets] == ["Add p50 / health Check p50", "ModelInfer p50 / Add p50",
                                            "server CPU per Add / per Check"]
    assert all(t["measured"] > 0 and t["status"] in ("PASS", "MISS") for t in targets)
    assert "Add p50 / health Check p50" in result.stdout and "CPU:" in result.stdout


RAW = """\
Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);_unary_response_in_pool (grpc/_server.py:788);handle (service/errors.py:95);AdderServicer.Add (service/adder_servicer.py:33);ModelRegistry.infer (service/models.py:150);Batcher.infer (service/batcher.py:160);Batcher._lead (service/batcher.py:236);Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:406) 7
Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);_unary_response_in_pool (grpc/_server.py:788);handle (service/errors.py:95);AdderServicer.Add (service/adder_servicer.py:33);ModelRegistry.infer (service/models.py:150);Batcher.infer (service/batcher.py:160);Batcher._follow (service/batcher.py:217) 3
Thread._bootstrap (threading.py:1002);_serve (grpc/_server.py:1314) 5
Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);_unary_response_in_pool (grpc/_server.py:796);_status (grpc/_server.py:766) 2
"""


def test_samples_go_to_the_innermost_part_that_names_them():
    profile = read_raw(RAW)
    assert profile.samples == 17
    assert profile.parts == Counter({"ORT session.run": 7, "batcher (service/batcher.py)": 3,
                                     "gRPC poll loop (_serve: completion queue, call set-up)": 5,
                                     "gRPC call in a worker (_server.py: receive, status, send)": 2})
    assert profile.leaves["_serve (grpc/_server.py:1314)"] == 5
    assert part_of(["main (x.py:1)"]) == OTHER


def test_perf_report_lines_become_shares_by_kind():
    report = "# comment\n    48.20%  [kernel.kallsyms]\n    15.00%  onnxruntime_pybind11_state.so\n     7.50%  cygrpc.so\n"
    shares = read_perf_dsos(report)
    assert shares == {"[kernel.kallsyms]": 48.2, "onnxruntime_pybind11_state.so": 15.0, "cygrpc.so": 7.5}
    assert [dso_part(d) for d in shares] == ["kernel (syscalls, network, scheduling)", "ONNX Runtime",
                                             "gRPC C-core (cygrpc)"]


def test_compare_measures_two_checkouts_side_by_side(measured_repository, tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.compare", "--before", str(ROOT), "--repository",
                             str(measured_repository), "--out", str(tmp_path), "--rounds", "1", "--calls", "3",
                             "--clients", "2", "--seconds", "0.3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)  # a hang bound
    assert result.returncode == 0, result.stdout + result.stderr
    (round_,) = json.loads((tmp_path / "compare.json").read_text())["rounds"]
    assert set(round_) == {"before", "after"} and round_["before"].keys() == round_["after"].keys()
    assert all(value > 0 for value in round_["after"].values())
