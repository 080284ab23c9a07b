"""The liveness plan (export/liveness.py): pure, checked on hand-made circuits under both gate rules."""

from export.circuit import edge_cone
from export.liveness import RENORMALISED, plan_liveness
from export.model import RENORMALISED_RULE

PREDICTING = range(5, 10)
# layer 1: row 5 reads key 2 (head 0) and key 1 (head 1); row 3 reads key 1 but no answer needs row 3
# layer 0: row 2 reads key 0; row 4 reads itself (not needed by anything above)
EDGES = [(1, 0, 5, 2), (1, 1, 5, 1), (1, 0, 3, 1), (0, 1, 2, 0), (0, 0, 4, 4)]


def test_answers_alone_read_the_edge_cone():
    plan = plan_liveness(EDGES, 2, PREDICTING, RENORMALISED, report_gates=False)
    assert plan.cone() == edge_cone(2, PREDICTING, EDGES)
    assert [set(layer.answer_rows) for layer in plan.layers] == [{2}, {5}]
    assert [set(layer.gate_rows) for layer in plan.layers] == [set(), set()]
    assert [set(layer.value_positions) for layer in plan.layers] == [{0}, {1, 2}]
    assert plan.layers[1].need_after == set(PREDICTING)  # the last layer's MLP runs only at the predicting positions
    assert plan.layers[0].need_after == {1, 2, 5, 6, 7, 8, 9}


def test_reported_gates_add_rows_and_keys_but_no_values():
    plan = plan_liveness(EDGES, 2, PREDICTING, RENORMALISED)
    assert [set(layer.gate_rows) for layer in plan.layers] == [{4}, {3}]
    assert plan.layers[1].row_keys == {5: {1, 2}, 3: {1}}
    assert plan.layers[1].key_positions == {1, 2} and plan.layers[1].value_positions == {1, 2}
    assert plan.layers[0].key_positions == {0, 4} and plan.layers[0].value_positions == {0}
    assert plan.layers[0].need_after == {1, 2, 3, 5, 6, 7, 8, 9}
    assert plan.cells() == sum(len(layer.need_before) for layer in plan.layers)
    assert plan.lookups == {0, 1, 6, 7, 8, 9}  # no row at any layer: they read only themselves


def test_the_paper_rule_reads_every_earlier_key_of_a_row():
    plan = plan_liveness(EDGES, 2, PREDICTING, "paper")
    assert plan.layers[1].key_positions == set(range(6))  # row 5's denominator: keys 0..5
    assert plan.layers[1].value_positions == {1, 2}  # but only its edges' values are weighted
    renormalised = plan_liveness(EDGES, 2, PREDICTING, RENORMALISED)
    assert plan.cells() > renormalised.cells()


def test_a_row_with_one_always_open_edge_copies_its_value():
    always_open = {(0, 1, 2, 0)}
    plan = plan_liveness(EDGES, 2, PREDICTING, RENORMALISED, always_open)
    assert plan.layers[0].copy_rows == {2: (1, 0)}
    assert plan.layers[0].copy_sources == {(0, 1)}
    assert 0 not in plan.layers[0].value_positions  # the copy takes a single head's value, no cache
    assert 2 not in plan.layers[0].softmax_rows()
    # the paper's rule has no copies (the open edge's weight is not 1), nor has a closable graph
    assert plan_liveness(EDGES, 2, PREDICTING, "paper", always_open).layers[0].copy_rows == {}
    assert plan_liveness(EDGES, 2, PREDICTING, RENORMALISED, always_open, closable=True).layers[0].copy_rows == {}


def test_a_closable_graph_computes_position_zero_when_it_has_a_row():
    with_self_edge = EDGES + [(0, 0, 0, 0)]
    assert 0 in plan_liveness(with_self_edge, 2, PREDICTING, RENORMALISED).lookups  # its table attends itself
    assert 0 not in plan_liveness(with_self_edge, 2, PREDICTING, RENORMALISED, closable=True).lookups
    assert 0 in plan_liveness(EDGES, 2, PREDICTING, RENORMALISED, closable=True).lookups  # no row: nothing to close


def test_no_edges_needs_only_the_predicting_positions():
    plan = plan_liveness([], 3, PREDICTING, RENORMALISED)
    assert plan.cone() == [set(PREDICTING)] * 3
    assert [layer.key_positions for layer in plan.layers] == [set()] * 3
    assert plan.lookups == set(range(10))


def test_the_plan_names_the_models_rule():
    assert RENORMALISED == RENORMALISED_RULE  # liveness.py stays import-free, so it spells the name itself
