"""Prometheus metrics: fetched over HTTP and parsed, moving with requests; scraped by a real Prometheus."""

import json
import math
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.fakes import HANG_S, eventually
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_S) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def metered(fixture_repository):
    with running_server(fixture_repository) as server, connect(server.port) as client:
        yield server, client


def test_metrics_move_as_requests_are_made(metered):
    server, client = metered
    before = scrape(server.metrics_port)
    for a in range(3):
        client.adder.Add(adder_pb2.AddRequest(a=a, b=1), timeout=HANG_S)
    client.adder.AddBatch(adder_pb2.AddBatchRequest(a=[1, 2], b=[3, 4], model="adder-dense"), timeout=HANG_S)
    with pytest.raises(grpc.RpcError):
        client.adder.Add(adder_pb2.AddRequest(a=1000, b=1), timeout=HANG_S)
    after = scrape(server.metrics_port)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("adder_answers_total", model="adder-sparse", correct="true") == 3
    assert moved("adder_answers_total", model="adder-dense", correct="true") == 2
    assert value(after, "adder_answers_total", model="adder-sparse", correct="false") == 0
    assert moved("adder_request_duration_seconds_count", method="Add", model="adder-sparse", code="OK",
                 protocol="grpc") == 3
    assert moved("adder_request_duration_seconds_count", method="Add", model="adder-sparse",
                 code="INVALID_ARGUMENT", protocol="grpc") == 1
    assert moved("adder_request_duration_seconds_count", method="AddBatch", model="adder-dense", code="OK",
                 protocol="grpc") == 1
    assert moved("adder_inference_duration_seconds_count", model="adder-sparse") == 3
    assert moved("adder_batch_size_sum", model="adder-dense") == 2
    assert moved("adder_queue_duration_seconds_count", model="adder-sparse") == 3
    assert value(after, "adder_inflight_requests") == 0


def test_sparsity_and_model_info(metered):
    server, _ = metered
    samples = scrape(server.metrics_port)
    assert value(samples, "adder_attention_edges", model="adder-sparse") == 6
    assert value(samples, "adder_attention_edges", model="adder-dense") == 220
    assert 0 < value(samples, "adder_attention_edge_density", model="adder-sparse") < 0.05
    assert value(samples, "adder_parameters", model="adder-sparse", kind="kept") == 250
    assert value(samples, "adder_parameters", model="adder-sparse", kind="total") == 1000
    assert value(samples, "adder_model_ready", model="adder-dense") == 1
    sha = server.models.models["adder-sparse"].files.sha256
    assert value(samples, "adder_model_info", model="adder-sparse", version="1", sha256=sha) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(port: int, promql: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=HANG_S) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="the prometheus binary is missing: `make setup` installs Debian's prometheus package")
def test_real_prometheus_scrapes_the_latency_histogram_of_both_models(metered, tmp_path):
    server, client = metered
    for model in ("adder-sparse", "adder-dense"):
        for a in range(5):
            client.adder.Add(adder_pb2.AddRequest(a=a, b=a, model=model), timeout=HANG_S)
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: sparse-adder\n    static_configs: [{{targets: ['127.0.0.1:{server.metrics_port}']}}]\n")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    promql = 'histogram_quantile(0.5, sum by (model, le) (adder_request_duration_seconds_bucket{method="Add"}))'
    try:
        result = []

        def scraped() -> bool:  # Prometheus starts, then scrapes every second
            assert process.poll() is None, process.stderr.read().decode()
            try:
                result[:] = _query(port, promql)
            except OSError:
                return False  # not listening yet
            return {r["metric"].get("model") for r in result} >= {"adder-sparse", "adder-dense"}

        assert eventually(scraped, every=0.5)
        medians = {r["metric"]["model"]: float(r["value"][1]) for r in result}
        assert all(0 < m < math.inf for m in medians.values())  # a quantile of real buckets, not NaN
        buckets = _query(port, 'adder_request_duration_seconds_bucket{method="Add",code="OK",le="+Inf"}')
        assert {b["metric"]["model"] for b in buckets} >= {"adder-sparse", "adder-dense"}
    finally:
        process.terminate()
        process.wait(timeout=HANG_S)
