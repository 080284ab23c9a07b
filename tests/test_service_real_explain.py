"""The real sparse build: live Explain, over gRPC, agrees with the export's ablation table on all 10,000 problems.

Skipped when the repository at $ADDER_MODEL_REPOSITORY (default <repo>/model_repository) is absent.
"""

import json

import numpy as np
import pytest

from contract import ABLATION_FILE, CIRCUIT_FILE, SPARSE_MODEL, model_dir
from export.ablation import AblationTable
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2
from export_support import REAL_REPOSITORY as REPOSITORY

FOLDER = model_dir(REPOSITORY, SPARSE_MODEL)
pytestmark = pytest.mark.skipif(not (FOLDER / ABLATION_FILE).exists(),
                                reason=f"no exported sparse build with an ablation table at {FOLDER}")
IN_FLIGHT = 64  # concurrent RPCs: the explain batcher runs them together


@pytest.fixture(scope="module")
def client():
    with running_server(REPOSITORY) as server, connect(server.port) as connected:
        yield connected


def test_live_explain_agrees_with_the_export_table_on_every_problem(client):
    table = AblationTable.load(FOLDER / ABLATION_FILE)
    edges = [(e["layer"], e["head"], e["query"], e["key"]) for e in json.loads((FOLDER / CIRCUIT_FILE).read_text())["edges"]]
    column = {edge: i for i, edge in enumerate(edges)}
    problems = list(range(len(table.a)))
    mismatches = []
    for start in range(0, len(problems), IN_FLIGHT):
        calls = [(i, client.adder.Explain.future(
            adder_pb2.ExplainRequest(a=int(table.a[i]), b=int(table.b[i])), timeout=60))
            for i in problems[start:start + IN_FLIGHT]]
        for i, call in calls:
            r = call.result()
            active = np.zeros(len(edges), bool)
            without = np.full(len(edges), -1)
            for x in r.edges:
                e = column[(x.edge.layer, x.edge.head, x.edge.query, x.edge.key)]
                active[e], without[e] = True, x.sum_without
                if x.necessary != (x.sum_without != r.sum):
                    mismatches.append((i, "necessary flag"))
            if not (r.sum == table.answer[i] and np.array_equal(active, table.active[i])
                    and np.array_equal(without, table.without[i])
                    and r.necessary_only_sum == table.necessary_only[i]
                    and r.necessary_only_right == (table.necessary_only[i] == table.a[i] + table.b[i])):
                mismatches.append((i, f"{table.a[i]}+{table.b[i]}"))
    assert not mismatches, f"{len(mismatches)} problems differ, first {mismatches[:5]}"
    assert len(problems) == 10_000


def test_get_circuit_reports_how_often_each_edge_is_necessary(client):
    table = AblationTable.load(FOLDER / ABLATION_FILE)
    circuit = client.adder.GetCircuit(adder_pb2.GetCircuitRequest(model=SPARSE_MODEL), timeout=30)
    assert [e.necessary for e in circuit.edges] == table.necessary.sum(0).tolist()
    assert [e.count for e in circuit.edges] == table.active.sum(0).tolist()
