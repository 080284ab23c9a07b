"""The commit phase's ceiling (no denser than what the attention phase reached, issue #20) and the
multiplier that holds its finetune under it."""

import math

import pytest
import torch

from export.commit import density_ceiling, density_multiplier_update
from export.config import CommitConfig
from export.sparsify import attention_density, batch_edge_density

HISTORY = [
    {"phase": "attention", "exact": 0.99, "edge_density": 0.010},  # sparsest, but not exact
    {"phase": "attention", "exact": 1.0, "edge_density": 0.0125},
    {"phase": "polish", "exact": 1.0, "edge_density": 0.0115},  # a repair round before the freeze counts
    {"phase": "neurons", "exact": 1.0, "edge_density": 0.0090},  # after the freeze: not the attention phase
]


def test_the_attention_phase_reached_its_sparsest_exact_checkpoint():
    assert attention_density(HISTORY) == 0.0115
    assert attention_density([h for h in HISTORY if h["phase"] == "neurons"]) is None


def test_the_ceiling_is_what_the_attention_phase_reached_within_the_target():
    assert density_ceiling(0.0115, target=0.015) == 0.0115
    assert density_ceiling(0.02, target=0.015) == 0.015
    assert density_ceiling(None, target=0.015) == 0.015  # nothing exact (tiny configs): the target alone


def test_the_batch_edge_density_counts_open_causal_edges_per_problem():
    # two layers, one head, 3 positions: 6 causal edges per layer, 12 per problem
    first = torch.zeros(2, 1, 3, 3)
    second = torch.zeros(2, 1, 3, 3)
    first[0, 0, 1, 0] = first[0, 0, 2, 2] = 1.0  # problem 0: 2 open edges
    second[1, 0, 2, 1] = 1.0  # problem 1: 1 open edge
    assert batch_edge_density([first, second]).item() == pytest.approx(3 / (2 * 12))


def test_the_density_multiplier_rises_over_the_bound_and_falls_under_it():
    cc = CommitConfig()
    over = density_multiplier_update(1.0, 0.012, bound=0.010, cc=cc)
    under = density_multiplier_update(1.0, 0.008, bound=0.010, cc=cc)
    assert over == pytest.approx(math.exp(cc.mu_rate * 0.2))
    assert under == pytest.approx(math.exp(-cc.mu_rate * 0.2))
    # a batch far over the bound moves mu by at most a factor e^rate, and mu stays within its clamp
    assert density_multiplier_update(1.0, 1.0, bound=0.010, cc=cc) == pytest.approx(math.exp(cc.mu_rate))
    assert density_multiplier_update(cc.mu_max, 1.0, bound=0.010, cc=cc) == cc.mu_max
    assert density_multiplier_update(cc.mu_min, 0.0, bound=0.010, cc=cc) == cc.mu_min
    assert density_multiplier_update(1.0, 0.001, bound=0.0, cc=cc) == pytest.approx(math.exp(cc.mu_rate))
    assert density_multiplier_update(1.0, 0.0, bound=0.0, cc=cc) == pytest.approx(math.exp(-cc.mu_rate))
