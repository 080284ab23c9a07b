"""Shared helpers for the export tests: a tiny trained model and hand-made sparse variants of it."""

import copy
import os
from functools import lru_cache
from pathlib import Path

import torch

from export.config import tiny_config
from export.task import make_domain
from export.train import train_base

REAL_REPOSITORY = Path(os.environ.get("ADDER_MODEL_REPOSITORY", Path(__file__).parents[1] / "model_repository"))


@lru_cache(maxsize=1)
def tiny_base():
    """(config, domain, base model) from a seconds-long training run (not exact)."""
    cfg = tiny_config()
    torch.set_num_threads(cfg.threads)
    domain = make_domain(cfg.seed, cfg.test_fraction)
    return cfg, domain, train_base(cfg, domain, progress=False).model


def hand_made_sparse(dead_layer: int = 1, dead_head: int = 1, kept_neurons: int = 10):
    """The tiny base with known structure: one whole layer's attention and one head closed, neurons cut.

    W_Q = 0 makes every logit 0, and the inference gate 1[0 > 0] closes every edge of that head.
    """
    cfg, domain, base = tiny_base()
    model = copy.deepcopy(base)
    with torch.no_grad():
        model.blocks[dead_layer].attn.W_Q.zero_()
        for block in model.blocks:
            block.attn.W_Q[dead_head].zero_()
            block.mlp.neuron_logits.fill_(-1.0)
            block.mlp.neuron_logits[:kept_neurons] = 1.0
    return cfg, domain, model.eval()
