"""Circuit extraction on a hand-made model, and the ONNX compile: what is dead is absent, answers agree."""

import copy

import numpy as np
import onnx
import torch

from contract import INPUT_A, INPUT_B
from export.circuit import Circuit, active_edges, extract_circuit, hard_gates
from export.compile import compile_model
from export.evaluate import greedy_digits
from export.task import N_POSITIONS, VOCAB_SIZE
from export.verify import session
from export_support import hand_made_sparse, tiny_base

PREDICTING = range(5, 10)


def _circuit(model, domain, gated, name="m"):
    return extract_circuit(model, name, domain.a, domain.b, gated, PREDICTING)


def test_circuit_of_hand_made_model_reports_dead_layer_heads_and_neurons():
    cfg, domain, model = hand_made_sparse(dead_layer=1, dead_head=1, kept_neurons=10)
    circuit = _circuit(model, domain, gated=True)
    layers, heads = cfg.model.n_layers, cfg.model.n_heads
    assert [1, 0] in circuit.dead_heads and [1, 1] in circuit.dead_heads and [0, 1] in circuit.dead_heads
    assert all(e.layer == 0 and e.head == 0 for e in circuit.edges)
    assert circuit.neurons_kept == [10] * layers
    gates = hard_gates(model, domain.a, domain.b)
    assert sum(e.count for e in circuit.edges) == int(gates.sum())
    per_problem = gates.flatten(1).sum(1).float()
    assert abs(circuit.edges_per_problem.mean - per_problem.mean().item()) < 1e-3
    assert circuit.possible_edges_per_problem == layers * heads * 55
    # every dead (layer, head, query) row really never fires
    for l, h, q in circuit.dead_query_rows:
        assert not gates[:, l, h, q].any()


def test_circuit_round_trips_through_json_and_is_deterministic():
    _, domain, model = hand_made_sparse()
    c1, c2 = _circuit(model, domain, True), _circuit(model, domain, True)
    assert c1.to_json() == c2.to_json()
    assert Circuit.from_json(c1.to_json()) == c1


def test_active_edges_of_one_problem_are_its_gates():
    _, domain, model = hand_made_sparse()
    edges = active_edges(model, 36, 28)
    gates = hard_gates(model, torch.tensor([36]), torch.tensor([28]))[0]
    assert len(edges) == int(gates.sum()) and all(gates[e] for e in edges)


def _initializer_shapes(proto: onnx.ModelProto) -> dict[str, tuple]:
    return {t.name: tuple(t.dims) for t in proto.graph.initializer}


def test_compile_leaves_out_what_the_circuit_marks_dead():
    cfg, domain, base = tiny_base()
    _, _, sparse = hand_made_sparse(dead_layer=1, dead_head=1, kept_neurons=10)
    dense = compile_model(base, _circuit(base, domain, False), False, cfg.opset).proto
    pruned = compile_model(sparse, _circuit(sparse, domain, True), True, cfg.opset).proto
    d, s = _initializer_shapes(dense), _initializer_shapes(pruned)
    d_head = cfg.model.d_model // cfg.model.n_heads
    assert not any(name.startswith(("W_Q_1", "W_K_1", "W_V_1", "W_O_1")) for name in s)  # layer 1 attention gone
    assert any(name.startswith("W_Q_1") for name in d)
    # layer 0's queries are looked up per (position, token), for the one live head only
    rows = N_POSITIONS * VOCAB_SIZE
    assert [shape for name, shape in s.items() if name.startswith("table_Q_0")] == [(rows, 1, d_head)]
    assert [shape for name, shape in d.items() if name.startswith("table_Q_0")] == [(rows, cfg.model.n_heads, d_head)]
    assert sorted(shape for name, shape in s.items() if name.startswith("fc_w")) == [(cfg.model.d_model, 10)] * 2
    assert len(pruned.graph.node) < len(dense.graph.node)
    assert pruned.ByteSize() < dense.ByteSize()


def test_onnx_decode_equals_torch_greedy_decode_on_all_10000_problems():
    cfg, domain, base = tiny_base()
    _, _, sparse = hand_made_sparse()
    for model, gated in ((base, False), (sparse, True)):
        circuit = _circuit(model, domain, gated)
        proto = compile_model(model, circuit, gated, cfg.opset).proto
        out = session(proto.SerializeToString()).run(None, {INPUT_A: domain.a.numpy(), INPUT_B: domain.b.numpy()})
        expected = greedy_digits(model, domain.tokens, gated).numpy()
        np.testing.assert_array_equal(out[1], expected)
        np.testing.assert_array_equal(out[0], expected @ (10 ** np.arange(4, -1, -1)))
        if gated:
            gates = hard_gates(model, domain.a, domain.b)
            edges = torch.stack([gates[:, e.layer, e.head, e.query, e.key] for e in circuit.edges], 1)
            np.testing.assert_array_equal(out[2], edges.numpy())


def test_neuron_pruning_keeps_every_answer_and_edge_budget():
    from export.prune import prune_neurons
    _, domain, model = hand_made_sparse(kept_neurons=32)
    before = greedy_digits(model, domain.tokens, True)
    edges_before = int(hard_gates(model, domain.a, domain.b).sum())
    kept = prune_neurons(model, domain.tokens)
    assert kept == [int(b.mlp.neuron_mask().sum()) for b in model.blocks]
    assert sum(kept) < 32 * len(kept)  # something was provably unnecessary
    assert torch.equal(greedy_digits(model, domain.tokens, True), before)
    assert int(hard_gates(model, domain.a, domain.b).sum()) <= edges_before


def test_a_circuit_with_no_edge_compiles_to_an_empty_edges_output():
    cfg, domain, base = tiny_base()
    model = copy.deepcopy(base)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()  # every gate logit 0: 1[0 > 0] closes every edge
    circuit = _circuit(model, domain, True)
    assert circuit.edges == []
    proto = compile_model(model, circuit, True, cfg.opset).proto
    out = session(proto.SerializeToString()).run(None, {INPUT_A: domain.a.numpy(), INPUT_B: domain.b.numpy()})
    assert out[2].shape == (10_000, 0) and out[2].dtype == bool
    np.testing.assert_array_equal(out[1], greedy_digits(model, domain.tokens, True).numpy())
