"""The renormalised gate rule (#20): softmax over the open edges only, in torch and in the ONNX build."""

import copy

import torch

from contract import SPARSE_MODEL
from export.circuit import extract_circuit
from export.compile import compile_model
from export.model import GATE_RULES, PAPER_RULE, RENORMALISED_RULE, renormalised_weights, set_gate_rule
from export.verify import verify_build
from export_support import hand_made_sparse

PREDICTING = range(5, 10)


def test_renormalised_weights_are_the_softmax_over_open_edges():
    logits = torch.tensor([[[1.0, 2.0, -3.0, 0.5], [0.1, -0.2, 0.3, 0.0]]])
    gates = torch.tensor([[[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    weights = renormalised_weights(logits, gates)
    expected = torch.softmax(logits[0, 0].masked_fill(gates[0, 0] == 0, float("-inf")), -1)
    assert torch.allclose(weights[0, 0], expected)
    assert torch.equal(weights[0, 1], torch.zeros(4))  # a row with no open edge outputs 0


def test_renormalised_weights_stay_finite_when_a_closed_key_dominates():
    logits = torch.tensor([[500.0, -10.0, -12.0]])  # the closed key's exp would overflow unclamped
    weights = renormalised_weights(logits, torch.tensor([[0.0, 1.0, 1.0]]))
    assert torch.isfinite(weights).all() and weights[0, 0] == 0
    assert torch.allclose(weights.sum(), torch.tensor(1.0))


def test_gates_carry_the_gradient_under_the_renormalised_rule():
    logits = torch.tensor([[0.5, 1.0, -0.5]], requires_grad=True)
    soft = torch.sigmoid(logits)
    gates = (logits > 0).float() + soft - soft.detach()  # the polish gate
    (renormalised_weights(logits, gates) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and logits.grad[0, 2] != 0  # the closed edge still learns


def test_onnx_build_follows_the_renormalised_rule_on_every_problem():
    cfg, domain, model = hand_made_sparse(dead_layer=1, dead_head=1, kept_neurons=10)
    answers = {}  # rule -> problems answered right, each proven ONNX = torch
    for rule in (PAPER_RULE, RENORMALISED_RULE):
        ruled = copy.deepcopy(model)
        set_gate_rule(ruled, rule)
        circuit = extract_circuit(ruled, SPARSE_MODEL, domain.a, domain.b, True, PREDICTING)
        assert circuit.gate_rule == GATE_RULES[rule]
        compiled = compile_model(ruled, circuit, True, cfg.opset)
        verified = verify_build(SPARSE_MODEL, compiled.proto.SerializeToString(), ruled, circuit, domain, True,
                                require_exact=False)  # raises if ONNX and torch disagree on any problem
        assert verified.edge_mismatches == 0
        answers[rule] = verified.correct
    assert set(answers) == {PAPER_RULE, RENORMALISED_RULE}
