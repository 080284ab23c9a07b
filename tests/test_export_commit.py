"""The commit phase's ceiling: no denser than what the attention phase reached (issue #20)."""

from export.commit import density_ceiling
from export.sparsify import attention_density

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
