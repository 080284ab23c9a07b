"""Faithfulness (#20): under the renormalised rule the circuit is all that computes the answer.

What attention reads (keys and values) at every position outside the circuit's edge cone is replaced
by random vectors, on all 10,000 problems, three draws: no answer and no gate of a needed row may
change. The same weights under the paper's rule must change answers, or the check would be vacuous.
Uses the committed sparse build's weights (exact under the paper's rule, whichever rule it records).
"""

import copy

import pytest
import torch

from contract import CHECKPOINT_FILE, SPARSE_MODEL, model_dir
from export.circuit import edge_cone
from export.evaluate import greedy_digits
from export.faithfulness import frozen_edges, randomise_outside_cone
from export.model import PAPER_RULE, RENORMALISED_RULE, load_checkpoint, set_gate_rule
from export.task import ANSWER_START, PREDICT_FROM, make_domain
from export_support import REAL_REPOSITORY

CHECKPOINT = model_dir(REAL_REPOSITORY, SPARSE_MODEL) / CHECKPOINT_FILE
pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"no sparse checkpoint at {CHECKPOINT}")
DRAWS = (0, 1, 2)


def under_rule(rule: str):
    """(model under `rule`, its own greedy-decoded sequences of all 10,000 problems)."""
    torch.set_num_threads(2)
    model = load_checkpoint(CHECKPOINT)
    model = copy.deepcopy(model)
    set_gate_rule(model, rule)
    tokens = make_domain(0, 0.2).tokens
    answers = greedy_digits(model, tokens, gated=True)
    return model, torch.cat([tokens[:, :ANSWER_START], answers], dim=1)


def test_edge_cone_follows_needed_rows_down():
    edges = [(1, 0, 5, 2), (1, 0, 3, 1), (0, 1, 2, 0), (0, 0, 4, 4)]
    cone = edge_cone(2, range(5, 10), edges)
    # layer 1: row 5 reads key 2 (row 3 is not needed); layer 0: row 2 reads key 0
    assert cone[1] == {2, 5, 6, 7, 8, 9}
    assert cone[0] == {0, 2, 5, 6, 7, 8, 9}


@pytest.mark.parametrize("seed", DRAWS)
def test_renormalised_answers_ignore_everything_outside_the_cone(seed):
    model, sequences = under_rule(RENORMALISED_RULE)
    result = randomise_outside_cone(model, sequences, seed)
    assert result.problems == 10_000
    assert (result.answers_changed, result.gates_changed) == (0, 0)


def test_paper_rule_answers_read_outside_the_cone():
    model, sequences = under_rule(PAPER_RULE)
    changed = max(randomise_outside_cone(model, sequences, seed).answers_changed for seed in DRAWS)
    assert changed > 0, "randomising outside the cone changed nothing under the paper's rule: the test is vacuous"


def test_cone_is_smaller_than_every_position():
    model, _ = under_rule(RENORMALISED_RULE)
    cone = edge_cone(len(model.blocks), range(PREDICT_FROM, 10), frozen_edges(model))
    assert sum(len(c) for c in cone) < len(model.blocks) * 10
