"""Is the circuit all that computes the answer? Randomise what attention reads outside its edge cone.

At every layer, the keys and values of each position outside the circuit's edge cone (circuit.edge_cone:
the answer positions plus, downwards, the keys of the edges whose rows are needed) are computed from
random vectors instead of that position's normalised residual. Under the renormalised rule no answer
and no gate of a needed row may change; under the paper's rule the softmax denominators still read
those keys, so answers do change (method.md: 7,503 of 10,000 on the seed-0 build).
"""

from dataclasses import dataclass

import torch

from export.circuit import edge_cone
from export.model import AdderTransformer
from export.task import PREDICT_FROM


@dataclass(frozen=True)
class Randomisation:
    problems: int
    answers_changed: int  # problems with any answer digit different
    gates_changed: int  # problems with any gate of a needed row different


def frozen_edges(model: AdderTransformer) -> list[tuple[int, int, int, int]]:
    """(layer, head, query, key) of every edge allowed to open: the frozen set (the circuit's edges
    once the edge set is frozen on them), or every causal pair before that."""
    return [(layer, *map(int, idx)) for layer, block in enumerate(model.blocks)
            for idx in block.attn.open_edges.nonzero()]


def needed_rows(cone: list[set[int]], predicting: range) -> list[set[int]]:
    """Per layer, the query rows whose output the answers read: the cone of the layer above."""
    return cone[1:] + [set(predicting)]


@torch.no_grad()
def run_with_random_keys(model: AdderTransformer, tokens: torch.Tensor, cone: list[set[int]],
                         generator: torch.Generator | None):
    """Hard-gate forward of `tokens` (N, T); with a generator, keys and values outside `cone[layer]` come
    from random vectors (each feature drawn with the real inputs' mean and spread). -> (logits, gates)."""
    x = model.embed(tokens)
    positions = torch.arange(tokens.shape[1])
    all_gates = []
    for layer, block in enumerate(model.blocks):
        h = block.ln_1(x)
        keys_values = h
        if generator is not None:
            outside = torch.tensor([int(p) not in cone[layer] for p in positions])[None, :, None]
            noise = torch.randn(h.shape, generator=generator) * h.std(dim=(0, 1)) + h.mean(dim=(0, 1))
            keys_values = torch.where(outside, noise, h)
        y, gates, _ = block.attn(h, "hard", keys_values=keys_values)
        x = x + y
        x = x + block.mlp(block.ln_2(x), "hard")[0]
        all_gates.append(gates.bool())
    return model.unembed(model.ln_f(x)), all_gates


@torch.no_grad()
def randomise_outside_cone(model: AdderTransformer, sequences: torch.Tensor, seed: int,
                           predicting: range = range(PREDICT_FROM, 10)) -> Randomisation:
    """Compare one random draw with the clean pass on the model's own decoded `sequences` (N, 11):
    teacher forcing on them gives greedy decoding's answers exactly when no prediction moves."""
    cone = edge_cone(len(model.blocks), predicting, frozen_edges(model))
    inputs = sequences[:, :-1]
    clean_logits, clean_gates = run_with_random_keys(model, inputs, cone, None)
    logits, gates = run_with_random_keys(model, inputs, cone, torch.Generator().manual_seed(seed))
    answer = slice(predicting.start, predicting.stop)
    answers = (logits[:, answer].argmax(-1) != clean_logits[:, answer].argmax(-1)).any(-1)
    moved = torch.zeros(len(inputs), dtype=torch.bool)
    for layer, rows in enumerate(needed_rows(cone, predicting)):
        rows = sorted(rows)
        moved |= (gates[layer][:, :, rows] != clean_gates[layer][:, :, rows]).flatten(1).any(-1)
    return Randomisation(len(inputs), int(answers.sum()), int(moved.sum()))


def main(argv=None) -> int:
    """`python -m export.faithfulness CHECKPOINT [--draws 3]`: the randomisation under both gate rules."""
    import argparse
    import copy

    from export.evaluate import greedy_digits
    from export.model import GATE_RULES, load_checkpoint, set_gate_rule
    from export.task import ANSWER_START, make_domain

    parser = argparse.ArgumentParser(prog="python -m export.faithfulness", description=main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    tokens = make_domain(0, 0.2).tokens
    loaded = load_checkpoint(args.checkpoint)
    for rule in GATE_RULES:
        model = copy.deepcopy(loaded)
        set_gate_rule(model, rule)
        answers = greedy_digits(model, tokens, gated=True)
        sequences = torch.cat([tokens[:, :ANSWER_START], answers], dim=1)
        right = int((answers == tokens[:, ANSWER_START:]).all(-1).sum())
        cone = edge_cone(len(model.blocks), range(PREDICT_FROM, 10), frozen_edges(model))
        draws = [randomise_outside_cone(model, sequences, seed) for seed in range(args.draws)]
        print(f"{rule}: {right} exact, cone cells {sum(map(len, cone))}, answers changed "
              f"{[d.answers_changed for d in draws]}, needed-row gates changed {[d.gates_changed for d in draws]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
