"""`make bench-peers` offline: the ratios, tables and JSON from made-up rounds; the client's answer check,
also end to end through the client workers against a fake Open Inference Protocol server that adds
wrong; the schedule and our server's arguments. No peer venv is made and no speed is asserted.

The last test runs the whole bench (slow) and is skipped unless both peer venvs are installed already.
"""

import json
import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from bench.peers import KSERVE, MLSERVER, OURS, PEERS, report, venvs
from bench.peers.client_pool import ClientFailure, ClientPool
from bench.proctime import cpu_seconds_coarse
from bench.peers.driver import WrongAnswer, check_sums
from bench.peers.rounds import CONCURRENT, SEQUENTIAL, Measurement, scenarios, schedule
from bench.peers.run import operand_tensors, ours_extra_args
from bench.peers.servers import pinned_version
from contract import INPUT_A, INPUT_B, OUTPUT_SUM, SPARSE_MODEL
from fixtures.fakes import HANG_S
from service.generated.inference import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
TENSORS = {"inputs": [[INPUT_A, "INT64"], [INPUT_B, "INT64"]], "output": OUTPUT_SUM}
INFO = {"cpu": "Test CPU", "usable_cpus": 2, "load_average_at_start": [0.5, 0.5, 0.5]}


def _m(round_, server, scenario, throughput, p50, clients=16) -> Measurement:
    clients = 1 if scenario == SEQUENTIAL else clients
    return Measurement(round_, SPARSE_MODEL, scenario, clients, server, calls=int(throughput), seconds=1.0,
                       throughput=throughput, p50=p50, p99=p50 * 3, cpu_per_call=p50 / 10)


def _rounds() -> list[Measurement]:
    """Three rounds; per round ours serves 2x KServe's and 4x MLServer's throughput, whatever the load."""
    out = []
    for r, load in ((1, 1.0), (2, 0.5), (3, 0.8)):  # a different machine load per round
        for server, speed in ((OURS, 4.0), (KSERVE, 2.0), (MLSERVER, 1.0)):
            out.append(_m(r, server, CONCURRENT, 1000 * speed * load, 0.010 / speed / load))
            out.append(_m(r, server, SEQUENTIAL, 500 * load, 0.002 / load * (1 if server == OURS else 1.25)))
    return out


def test_ratios_are_paired_within_rounds_and_their_median_reported():
    rows = {(r["scenario"], r["peer"]): r for r in report.ratios(_rounds())}
    assert set(rows) == {(s, p) for s in (SEQUENTIAL, CONCURRENT) for p in PEERS}
    kserve = rows[(CONCURRENT, KSERVE)]
    assert kserve["throughput_ours_over_peer"] == {"median": 2.0, "min": 2.0, "max": 2.0, "n": 3}
    assert rows[(CONCURRENT, MLSERVER)]["throughput_ours_over_peer"]["median"] == pytest.approx(4.0)
    assert kserve["p50_ours_over_peer"]["median"] == pytest.approx(0.5)
    assert rows[(SEQUENTIAL, KSERVE)]["p50_ours_over_peer"]["median"] == pytest.approx(0.8)
    assert kserve["cpu_ours_over_peer"]["median"] == pytest.approx(0.5)


def test_headline_names_the_issue_figures():
    heads = report.headline(report.ratios(_rounds()), SPARSE_MODEL)
    assert heads == pytest.approx({"16-client throughput, ours/KServe": 2.0, "16-client throughput, ours/MLServer": 4.0,
                                   "sequential p50 latency, ours/KServe": 0.8,
                                   "sequential p50 latency, ours/MLServer": 0.8})


def test_summary_takes_medians_over_rounds():
    rows = {(r["scenario"], r["server"]): r for r in report.summarize(_rounds())}
    ours = rows[(CONCURRENT, OURS)]
    assert ours["rounds"] == 3 and ours["throughput"]["median"] == pytest.approx(3200.0)
    assert ours["throughput"]["min"] == pytest.approx(2000.0) and ours["throughput"]["max"] == pytest.approx(4000.0)
    assert ours["calls"] == 4000 + 2000 + 3200


def test_markdown_and_json_hold_every_row(tmp_path):
    measurements = _rounds()
    summary, ratio_rows = report.summarize(measurements), report.ratios(measurements)
    servers = {OURS: {"max_batch_size": 64}, KSERVE: {"version": "0.21.0"}, MLSERVER: {"version": "1.7.1"}}
    table = report.markdown(summary, ratio_rows, INFO, servers, 3, 5.0)
    assert "CPU: Test CPU" in table and "max_batch_size=64" in table and "version=0.21.0" in table
    assert "| adder-sparse | 16 clients | ours / KServe | 2.00 (2.00-2.00) |" in table
    assert "| adder-sparse | 16 clients | MLServer | 800 (500-1,000) | 12.50 | 37.50 | 1,250 (1,000-2,000) | 3 | 2,300 |" in table
    assert table.count("| adder-sparse |") == 6 + 4  # 3 servers x 2 scenarios, then 2 peers x 2 scenarios
    assert "16-client throughput, ours/MLServer 4.00x" in table
    heads = {SPARSE_MODEL: report.headline(ratio_rows, SPARSE_MODEL)}
    report.write_json(tmp_path / "peers.json", measurements, summary, ratio_rows, heads, INFO, servers, {"rounds": 3})
    data = json.loads((tmp_path / "peers.json").read_text())
    assert len(data["measurements"]) == 18 and data["servers"] == servers
    assert data["headline"][SPARSE_MODEL]["16-client throughput, ours/KServe"] == pytest.approx(2.0)


def test_the_answer_check_raises_on_any_wrong_sum():
    check_sums(np.array([99, 0]), np.array([99, 7]), np.array([198, 7]))
    for wrong in (np.array([198, 8]), np.array([[198], [7]]), np.array([198]), None):
        with pytest.raises(WrongAnswer):
            check_sums(np.array([99, 0]), np.array([99, 7]), wrong)


def test_rounds_rotate_the_server_order_and_cover_every_step():
    rounds = schedule(3, [SPARSE_MODEL], scenarios(16), [OURS, KSERVE, MLSERVER])
    assert [steps[0].server for steps in rounds] == [OURS, KSERVE, MLSERVER]
    for r, steps in enumerate(rounds, 1):
        assert {(s.scenario.kind, s.server) for s in steps} == {(k, v) for k in (SEQUENTIAL, CONCURRENT)
                                                                for v in (OURS, KSERVE, MLSERVER)}
        assert all(s.round == r for s in steps) and len(steps) == 6


def test_our_server_gets_workers_only_when_asked_for_more_than_one():
    assert ours_extra_args(None, "") == ()
    assert ours_extra_args(1, "") == ()
    assert ours_extra_args(3, "--max-queue-delay-us 200 --x 'a b'") == (
        "--workers", "3", "--max-queue-delay-us", "200", "--x", "a b")


def test_client_tensors_come_from_the_manifest(fixture_repository):
    assert operand_tensors(fixture_repository, [SPARSE_MODEL]) == {SPARSE_MODEL: TENSORS}


def test_peer_venvs_count_as_installed_only_with_a_current_stamp(tmp_path):
    for peer in PEERS:
        assert not venvs.is_installed(peer, tmp_path)
        assert pinned_version(peer) != "?"  # the peer itself is pinned exactly


def test_server_cpu_counts_the_whole_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\nprint(flush=True)\nsys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # the child has burnt 0.3 s of CPU time (not wall time: no speed involved)
        mine = cpu_seconds_coarse(os.getpid()) - sum(os.times()[:2])
        assert mine >= 0.25  # the child's CPU (clock ticks: 10 ms apart) is counted with ours
    finally:
        child.stdin.close()
        child.wait()


class WrongAdder(pb_grpc.GRPCInferenceServiceServicer):
    """Open Inference Protocol with raw tensors, as the peers answer tritonclient; adds `error` to each sum."""

    def __init__(self, error: int):
        self.error = error

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=True)

    def ModelInfer(self, request, context):
        a, b = (np.frombuffer(raw, dtype=np.int64) for raw in request.raw_input_contents)
        sums = a + b + self.error
        response = pb.ModelInferResponse(model_name=request.model_name)
        response.outputs.add(name=OUTPUT_SUM, datatype="INT64", shape=list(sums.shape))
        response.raw_output_contents.append(sums.tobytes())
        return response


@pytest.fixture
def fake_server():
    servers = []

    def start(error: int) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(4))
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(WrongAdder(error), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"
    yield start
    for server in servers:
        server.stop(0)


def test_client_workers_measure_right_answers_and_fail_on_a_wrong_one(fake_server, tmp_path):
    right, wrong = fake_server(0), fake_server(1)
    pool = ClientPool(2, tmp_path)
    try:
        assert pool.ready(right, SPARSE_MODEL, timeout_s=HANG_S)
        sample = pool.run(right, SPARSE_MODEL, TENSORS, clients=4, seconds=HANG_S, calls=40, warmup_calls=1,
                          timeout_s=HANG_S, seed=0)
        assert len(sample.latencies) == 40 and sample.seconds > 0
        with pytest.raises(ClientFailure, match="WrongAnswer"):
            pool.run(wrong, SPARSE_MODEL, TENSORS, clients=4, seconds=HANG_S, calls=40, warmup_calls=0,
                     timeout_s=HANG_S, seed=0)
    finally:
        pool.close()


@pytest.mark.slow
@pytest.mark.skipif(not all(venvs.is_installed(p) for p in PEERS),
                    reason="peer venvs not installed (make bench-peers makes them); this test never installs")
def test_whole_bench_against_both_peers(measured_repository, tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.peers", "--repository", str(measured_repository),
                             "--out", str(tmp_path), "--rounds", "2", "--seconds", "0.5", "--calls", "64",
                             "--clients", "4", "--client-processes", "2", "--client-warmup", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)  # a hang bound
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "peers.json").read_text())
    steps = {(m["round"], m["scenario"], m["server"]) for m in data["measurements"]}
    assert steps == {(r, s, v) for r in (1, 2) for s in (SEQUENTIAL, CONCURRENT) for v in (OURS, KSERVE, MLSERVER)}
    assert all(m["calls"] > 0 for m in data["measurements"])
    assert set(data["headline"][SPARSE_MODEL]) >= {"4-client throughput, ours/KServe", "sequential p50 latency, ours/KServe"}
    assert (tmp_path / "peers.md").is_file() and (tmp_path / f"peers-{SPARSE_MODEL}.png").is_file()
