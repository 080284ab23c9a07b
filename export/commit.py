"""The commit phase: the sparse model, its edge set frozen and neurons pruned, switches to the served
gate rule (renormalised: a closed edge leaves its row's softmax) and its weights are finetuned until
it is exact on all 10,000 problems again, no denser than the sparsification left it (plus a slack).

Sparsification itself keeps the paper's rule; only this phase and everything after it (circuit,
compile, verification, ablation, Explain) use the committed rule, which the model's config records.
"""

import copy
import time
from dataclasses import dataclass, field

import torch

from export.config import CommitConfig, ExportConfig
from export.evaluate import answer_loss
from export.circuit import hard_gates
from export.model import PAPER_RULE, AdderTransformer, freeze_edge_set, set_gate_rule
from export.sparsify import SparsificationError, hard_eval
from export.task import PREDICT_FROM, Domain


@dataclass
class CommitResult:
    model: AdderTransformer
    gate_rule: str
    steps: int
    seconds: float
    start_correct: int  # problems exact under the new rule before any finetuning
    correct: int  # problems exact at the end
    start_edge_density: float  # under the paper's rule, as sparsification left it
    edge_density: float  # at the end, under the committed rule
    density_ceiling: float
    history: list[dict] = field(default_factory=list)

    def manifest_entry(self) -> dict:
        """The phase's figures, for the manifest's training section."""
        return {"gate_rule": self.gate_rule, "steps": self.steps, "seconds": round(self.seconds, 1),
                "start_correct": self.start_correct, "correct": self.correct,
                "start_edge_density": self.start_edge_density, "edge_density": self.edge_density,
                "density_ceiling": self.density_ceiling}


def density_ceiling(start_density: float, cc: CommitConfig, target: float) -> float:
    """The densest the committed model may be: the sparsified density plus the slack, within the target."""
    return min(start_density * (1 + cc.density_slack), max(target, start_density))


def open_fraction(gates: list[torch.Tensor]) -> torch.Tensor:
    """Mean over problems of the fraction of causal pairs whose gate is open. With polish gates its
    gradient is sigmoid's on the frozen set's edges only (the paper's expected density averages over
    every causal pair, and at weight 1 let the committed model grow from 1.25% to 1.55% edges)."""
    T = gates[0].shape[-1]
    possible = len(gates) * gates[0].shape[1] * T * (T + 1) // 2
    return sum(g.sum(dim=(1, 2, 3)) for g in gates).mean() / possible


def finetune_weights(model: AdderTransformer, domain: Domain, cc: CommitConfig, ceiling: float,
                     seed: int, log=None) -> tuple[int, list[dict]]:
    """Train every weight but the neuron gates until exact on the whole domain at or under `ceiling`
    (checked every `eval_every` steps); return the steps taken and the evaluations."""
    tokens = domain.tokens
    train_tokens = tokens[domain.train]
    weights = [p for name, p in model.named_parameters() if not name.endswith("neuron_logits")]
    opt = torch.optim.Adam(weights, lr=cc.lr)
    gen = torch.Generator().manual_seed(seed)
    wrong, history = train_tokens[:0], []
    for step in range(1, cc.max_steps + 1):
        batch = train_tokens[torch.randint(len(train_tokens), (cc.batch_size,), generator=gen)]
        batch = torch.cat([batch, wrong[:cc.mine_wrong]])
        model.train()
        logits, gates, _, _ = model(batch[:, :-1], cc.gate_mode, "hard")
        loss = answer_loss(logits[:, PREDICT_FROM:], batch)
        if cc.gate_mode == "polish" and cc.density_weight:
            loss = loss + cc.density_weight * open_fraction(gates)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cc.eval_every:
            continue
        model.eval()
        exact, density, _, _ = hard_eval(model, tokens)
        wrong = train_tokens[~exact[domain.train]]
        history.append({"step": step, "ce": loss.item(), "correct": int(exact.sum()), "edge_density": density})
        if log:
            log(f"commit step {step}: {history[-1]}")
        if bool(exact.all()) and density <= ceiling:
            return step, history
    return cc.max_steps, history


def commit(cfg: ExportConfig, domain: Domain, sparse: AdderTransformer, log=None) -> CommitResult:
    """A copy of `sparse` under `cfg.commit.gate_rule`, finetuned until exact (or SparsificationError
    when `require_exact` and it is not within `max_steps`)."""
    cc, start = cfg.commit, time.perf_counter()
    model = copy.deepcopy(sparse).eval()
    _, start_density, _, _ = hard_eval(model, domain.tokens)
    ceiling = density_ceiling(start_density, cc, cfg.sparsify.target_edge_density)
    set_gate_rule(model, cc.gate_rule)
    exact, density, _, _ = hard_eval(model, domain.tokens)
    start_correct, steps, history = int(exact.sum()), 0, []
    if log:
        log(f"commit: {start_correct} exact under {cc.gate_rule} before finetuning, edge density "
            f"{start_density:.4%} -> {density:.4%} (ceiling {ceiling:.4%})")
    if cc.gate_rule != PAPER_RULE and not (bool(exact.all()) and density <= ceiling):
        torch.manual_seed(cfg.seed + 5)
        steps, history = finetune_weights(model, domain, cc, ceiling, cfg.seed + 6, log)
        model.eval()
        exact, density, _, _ = hard_eval(model, domain.tokens)
    # the frozen set shrinks to the edges the committed model uses: an edge that no problem opens any
    # more must not open on inputs outside the domain's (the faithfulness check randomises keys)
    freeze_edge_set(model, hard_gates(model, domain.a, domain.b).unbind(1))
    result = CommitResult(model, cc.gate_rule, steps, time.perf_counter() - start, start_correct,
                          int(exact.sum()), start_density, density, ceiling, history)
    if cfg.sparsify.require_exact and not (result.correct == len(exact) and density <= ceiling):
        raise SparsificationError(f"commit ({cc.gate_rule}, gates {cc.gate_mode}): {result.correct} of {len(exact)} "
                                  f"exact at edge density {density:.4%} (ceiling {ceiling:.4%}) after {steps} steps; "
                                  "raise commit.max_steps")
    return result


def main(argv=None) -> int:
    """`python -m export.commit CHECKPOINT [--out FILE]`: commit an already sparsified checkpoint (e.g.
    model_repository/adder-sparse/1/model.pt), then compile and verify it on all 10,000 problems."""
    import argparse
    from dataclasses import replace

    from contract import SPARSE_MODEL
    from export.circuit import extract_circuit
    from export.compile import compile_model
    from export.model import load_checkpoint, save_checkpoint
    from export.task import N_POSITIONS, make_domain
    from export.verify import verify_build

    parser = argparse.ArgumentParser(prog="python -m export.commit", description=main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="write the committed checkpoint here")
    parser.add_argument("--gate-mode", default=CommitConfig.gate_mode, choices=("hard", "polish"))
    parser.add_argument("--density-weight", type=float, default=CommitConfig.density_weight)
    parser.add_argument("--lr", type=float, default=CommitConfig.lr)
    parser.add_argument("--max-steps", type=int, default=CommitConfig.max_steps)
    args = parser.parse_args(argv)
    cfg = ExportConfig()
    cfg = replace(cfg, commit=replace(cfg.commit, gate_mode=args.gate_mode, density_weight=args.density_weight,
                                      lr=args.lr, max_steps=args.max_steps))
    torch.set_num_threads(cfg.threads)
    domain = make_domain(cfg.seed, cfg.test_fraction)
    result = commit(cfg, domain, load_checkpoint(args.checkpoint), lambda line: print(line, flush=True))
    print(result.manifest_entry())
    circuit = extract_circuit(result.model, SPARSE_MODEL, domain.a, domain.b, True, range(PREDICT_FROM, N_POSITIONS))
    print(f"edges per problem {circuit.edges_per_problem.mean}, distinct {len(circuit.edges)}, "
          f"cone cells {len(circuit.live_positions)}")
    compiled = compile_model(result.model, circuit, True, cfg.opset)
    verified = verify_build(SPARSE_MODEL, compiled.proto.SerializeToString(), result.model, circuit, domain, True)
    print(f"ONNX = torch on all {verified.total}: {verified.correct} exact, edge mismatches {verified.edge_mismatches}")
    if args.out:
        save_checkpoint(result.model, args.out, gated=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
