"""The renormalised build's liveness plan (export/liveness.py): pure, checked on hand-made circuits."""

from export.circuit import edge_cone
from export.liveness import cone_plan

PREDICTING = range(5, 10)
# layer 1: row 5 reads key 2 (head 0) and key 1 (head 1); row 3 reads key 1 but no answer needs row 3
# layer 0: row 2 reads key 0; row 4 reads itself (not needed by anything above)
EDGES = [(1, 0, 5, 2), (1, 1, 5, 1), (1, 0, 3, 1), (0, 1, 2, 0), (0, 0, 4, 4)]


def test_answers_alone_read_the_edge_cone():
    plan = cone_plan(EDGES, 2, PREDICTING, report_gates=False)
    assert plan.need_before == edge_cone(2, PREDICTING, EDGES)
    assert plan.answer_rows == [{2}, {5}]
    assert plan.gate_rows == [set(), set()]
    assert plan.value_positions == [{0}, {1, 2}]
    assert plan.need_after[1] == set(PREDICTING)  # the last layer's MLP runs only at the predicting positions
    assert plan.need_after[0] == {1, 2, 5, 6, 7, 8, 9}


def test_reported_gates_add_rows_and_keys_but_no_values():
    plan = cone_plan(EDGES, 2, PREDICTING)
    assert plan.gate_rows == [{4}, {3}]
    assert plan.row_keys[1] == {5: {1, 2}, 3: {1}}
    assert plan.key_positions[1] == {1, 2} and plan.value_positions[1] == {1, 2}
    assert plan.key_positions[0] == {0, 4} and plan.value_positions[0] == {0}
    assert plan.need_after[0] == {1, 2, 3, 5, 6, 7, 8, 9}
    assert plan.cells() == len(plan.need_before[0]) + len(plan.need_before[1])


def test_no_edges_needs_only_the_predicting_positions():
    plan = cone_plan([], 3, PREDICTING)
    assert plan.need_before == [set(PREDICTING)] * 3
    assert plan.key_positions == [set()] * 3
