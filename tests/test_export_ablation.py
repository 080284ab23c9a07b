"""The ablation stage on a hand-made model: explain.onnx, the table (torch = ONNX) and what circuit.json reports."""

from functools import lru_cache

import numpy as np
import onnx
import pytest
import torch

from contract import INPUT_A, INPUT_B, INPUT_EDGE_MASK
from export.ablation import allowed_gates, explain_sparse
from export.circuit import Circuit, extract_circuit
from export.compile import compile_model
from export.task import ANSWER_START, Domain, sequences
from export.verify import VerificationError, session
from export_support import hand_made_sparse

PROBLEMS = 300


@lru_cache(maxsize=1)
def explained():
    """The stage on the hand-made model (only layer 0 head 0 can open) over 300 problems, with 36+28."""
    cfg, full, model = hand_made_sparse(dead_layer=1, dead_head=1, kept_neurons=10)
    pick = torch.randperm(len(full.a), generator=torch.Generator().manual_seed(1))[:PROBLEMS]
    pick[0] = 36 * 100 + 28
    domain = Domain(full.a[pick], full.b[pick], torch.arange(PROBLEMS), torch.arange(0))
    circuit = extract_circuit(model, "adder-sparse", domain.a, domain.b, True, range(5, 10))
    compiled = compile_model(model, circuit, True, cfg.opset)
    return model, circuit, compiled, domain, explain_sparse(model, circuit, compiled.proto, domain, cfg.opset,
                                                             log=lambda *_: None)


@torch.no_grad()
def step_by_step_sum(model, circuit: Circuit, a: int, b: int, closed: int | None) -> int:
    """Plain greedy decoding, one token per forward pass, with circuit edge `closed` shut (None: all open)."""
    mask = torch.ones(1, len(circuit.edges), dtype=torch.bool)
    if closed is not None:
        mask[0, closed] = False
    allowed = allowed_gates(circuit, mask).unbind(1)
    seq = sequences(torch.tensor([a]), torch.tensor([b]))[:, :ANSWER_START]
    for _ in range(5):
        logits = model(seq, "hard", "hard", allowed)[0]
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return int("".join(str(int(t)) for t in seq[0, ANSWER_START:]))


def test_an_edge_the_answer_needs_is_necessary_and_one_it_does_not_is_not():
    model, circuit, _, _, result = explained()
    table = result.table
    necessary = table.necessary
    redundant = table.active & ~necessary
    assert necessary.any() and redundant.any()
    rng = np.random.default_rng(0)
    for kind, cells in (("necessary", necessary), ("redundant", redundant)):
        rows, cols = np.nonzero(cells)
        for k in rng.choice(len(rows), size=min(8, len(rows)), replace=False):
            i, e = rows[k], cols[k]
            a, b = int(table.a[i]), int(table.b[i])
            answer = step_by_step_sum(model, circuit, a, b, None)
            without = step_by_step_sum(model, circuit, a, b, int(e))
            assert answer == table.answer[i] and without == table.without[i, e]
            assert (without != answer) == (kind == "necessary"), f"{a}+{b} edge {circuit.edges[e]}"


def test_table_covers_every_active_edge_and_circuit_json_counts_it():
    _, circuit, _, domain, result = explained()
    table, edges = result.table, result.circuit.edges
    assert ((table.without >= 0) == table.active).all()
    assert result.circuit.ablation["rows"] == int(table.active.sum())
    assert [e.count for e in edges] == table.active.sum(0).tolist()  # fires, as before
    assert [e.necessary for e in edges] == table.necessary.sum(0).tolist()
    for e, edge in enumerate(edges):
        assert sum(edge.changes_digit) >= edge.necessary  # a changed answer changes at least one digit
    per_problem = result.circuit.necessary_per_problem
    assert per_problem.problems == PROBLEMS
    assert per_problem.mean == pytest.approx(table.necessary.sum(1).mean(), abs=1e-4)
    assert per_problem.carry.problems + per_problem.no_carry.problems == PROBLEMS
    # the sufficient set keeps every necessary edge, drops only active ones, and keeps right answers right
    assert (table.sufficient >= table.necessary).all() and (table.sufficient <= table.active).all()
    assert Circuit.from_json(result.circuit.to_json()) == result.circuit


def test_explain_graph_needs_its_mask_and_all_open_equals_model_onnx():
    _, circuit, compiled, domain, result = explained()
    graph = onnx.load_from_string(result.explain_bytes)
    mask_input = [i for i in graph.graph.input if i.name == INPUT_EDGE_MASK]
    assert len(mask_input) == 1 and mask_input[0].type.tensor_type.shape.dim[1].dim_value == len(circuit.edges)
    a, b = domain.a.numpy(), domain.b.numpy()
    opened = session(result.explain_bytes).run(None, {INPUT_A: a, INPUT_B: b,
                                                      INPUT_EDGE_MASK: np.ones((len(a), len(circuit.edges)), bool)})
    served = session(compiled.proto.SerializeToString()).run(None, {INPUT_A: a, INPUT_B: b})
    for x, y in zip(opened, served):
        np.testing.assert_array_equal(x, y)
    # model.onnx itself is unchanged: no mask input
    assert [i.name for i in compiled.proto.graph.input] == [INPUT_A, INPUT_B]


def test_a_graph_that_is_not_the_served_one_is_refused():
    model, circuit, compiled, domain, _ = explained()
    other = compile_model(model, circuit, True, compiled.proto.opset_import[0].version).proto
    with torch.no_grad():
        broken = type(model)(model.cfg)
        broken.load_state_dict(model.state_dict())
        broken.unembed.weight.mul_(-1)  # a different answer everywhere
    wrong = compile_model(broken.eval(), circuit, True, other.opset_import[0].version).proto
    with pytest.raises(VerificationError, match="differs from model.onnx"):
        explain_sparse(model, circuit, wrong, domain, other.opset_import[0].version, log=lambda *_: None)
