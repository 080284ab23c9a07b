"""ADDER_WORKERS: several server processes on one set of ports, one metrics scrape, restarted if one dies."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from contract import SPARSE_MODEL
from fixtures.fakes import HANG_S, eventually
from fixtures.service_repository import build_repository
from service.cpus import available_cpus, cgroup_cpu_quota
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 40  # fresh connections: the kernel hashes each to a worker; all 40 on one of 2: p = 2^-39


def workers_server(repository: Path, tmp_path: Path, workers: int = 2) -> ServerProcess:
    return ServerProcess(repository, tmp_path / "server.log", max_batch_size=64, intra_op_threads=1,
                         extra_args=("--workers", str(workers)))


def add_on_fresh_connections(target: str, count: int) -> None:
    for a in range(count):
        # A subchannel pool of its own: a new channel may not reuse an earlier one's connection.
        with grpc.insecure_channel(target, options=(("grpc.use_local_subchannel_pool", 1),)) as channel:
            response = adder_pb2_grpc.AdderStub(channel).Add(adder_pb2.AddRequest(a=a, b=7, model=SPARSE_MODEL),
                                                              timeout=HANG_S)
        assert response.sum == a + 7


def scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(server.metrics_url, timeout=HANG_S) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def answers_by_worker(metrics_dir: str, pids: list[int]) -> dict[int, float]:
    """Right answers each worker process gave, read from its own multiprocess metrics file."""
    counts = {}
    for pid in pids:
        files = [str(path) for path in Path(metrics_dir).glob(f"counter_{pid}.db")]
        samples = [s for m in MultiProcessCollector.merge(files) for s in m.samples
                   if s.name == "adder_answers_total" and s.labels.get("correct") == "true"]
        counts[pid] = sum(s.value for s in samples)
    return counts


def test_two_workers_share_the_port_and_one_scrape_counts_both(fixture_repository, tmp_path):
    with workers_server(fixture_repository, tmp_path) as server:
        listening = server.wait_for("listening")[1]
        assert listening["workers"] == 2 and len(set(listening["pids"])) == 2
        add_on_fresh_connections(server.target, CONNECTIONS)
        by_worker = answers_by_worker(listening["metrics_dir"], listening["pids"])
        assert all(count > 0 for count in by_worker.values()), by_worker  # both served
        samples = scrape(server)
        right = ("adder_answers_total", (("correct", "true"), ("model", SPARSE_MODEL)))
        assert samples[right] == CONNECTIONS == sum(by_worker.values())  # the scrape adds the workers up
        assert samples[("adder_workers", ())] == 2
        assert samples[("adder_model_ready", (("model", SPARSE_MODEL),))] == 1
        assert samples[("adder_inflight_requests", ())] == 0


def test_a_worker_that_dies_is_started_again_and_the_others_serve_meanwhile(fixture_repository, tmp_path):
    with workers_server(fixture_repository, tmp_path) as server:
        listening = server.wait_for("listening")[1]
        os.kill(listening["pids"][0], signal.SIGKILL)
        _, exited = server.wait_for("worker exited")
        assert (exited["worker"], exited["pid"], exited["code"]) == (0, listening["pids"][0], -signal.SIGKILL)
        # Until the new worker has proven its models it does not listen: no fresh connection fails meanwhile.
        failures, restarting = [], threading.Event()

        def keep_adding() -> None:
            while not restarting.is_set():
                try:
                    add_on_fresh_connections(server.target, 1)
                except (grpc.RpcError, AssertionError) as error:
                    failures.append(error)

        adder = threading.Thread(target=keep_adding)
        adder.start()
        restarted = server.wait_for("worker restarted")[1]
        restarting.set()
        adder.join(HANG_S)
        assert not failures, failures[:3]
        assert restarted["worker"] == 0 and restarted["pid"] not in listening["pids"]
        assert eventually(lambda: scrape(server)[("adder_workers", ())] == 2)
        add_on_fresh_connections(server.target, CONNECTIONS)
        by_worker = answers_by_worker(listening["metrics_dir"], [restarted["pid"], listening["pids"][1]])
        assert all(count > 0 for count in by_worker.values()), by_worker


def test_workers_stop_when_their_supervisor_is_killed(fixture_repository, tmp_path):
    with workers_server(fixture_repository, tmp_path) as server:
        pids = server.wait_for("listening")[1]["pids"]
        server.process.kill()
        server.process.wait()
        assert eventually(lambda: not any(_alive(pid) for pid in pids))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has exited


def run_server(*args: str) -> tuple[int, list[dict]]:
    result = subprocess.run([sys.executable, "-m", "service", "--workers", "2", "--grpc-port", "0",
                             "--metrics-port", "-1", "--http-port", "-1", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=HANG_S)
    return result.returncode, [json.loads(line) for line in result.stderr.splitlines()]


def test_workers_that_cannot_serve_stop_start_up_with_the_reason(tmp_path):
    code, records = run_server("--model-repository", str(build_repository(tmp_path, sparse="corrupt",
                                                                          dense="bad_sha")))
    assert code == 1
    assert (records[-1]["message"], records[-1]["logger"]) == ("cannot start", "service.supervisor")
    assert records[-1]["reason"].startswith("no model passed its checks: adder-dense: sha256 mismatch")


def test_a_port_another_server_holds_is_an_error_not_a_share(fixture_repository):
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a gRPC server holds its port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, records = run_server("--model-repository", str(fixture_repository), "--grpc-port", str(port))
    assert code == 1
    assert records[-1]["message"] == "cannot start" and f"cannot bind gRPC to 127.0.0.1:{port}" in records[-1]["reason"]


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", None), ("150000 100000", 1.5), ("200000 100000", 2.0)])
def test_the_cpu_limit_is_read_from_cgroup_v2(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cgroup_cpu_quota(tmp_path) == expected


def test_workers_default_to_the_cpu_quota_rounded_up_within_the_affinity(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{affinity * 100000 + 1} 100000\n")  # more than we may run on
    assert available_cpus(tmp_path) == affinity
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(v1) == affinity
