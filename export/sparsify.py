"""Post-train the base model with gated attention (and neurons) under a GECO-constrained objective.

minimise  E[edge density] + w * E[neuron density]   subject to   CE <= tau,  tau = base CE + margin
as the Lagrangian  density + lambda * (CE - tau), with lambda <- lambda * exp(eta * EMA(CE - tau)).
The kept checkpoint is selected on the *deterministic* gates: the sparsest one that is still exact
on all 10,000 problems (noisy-gate CE can sit under tau while hard-gate accuracy is far lower).
"""

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from export.config import ExportConfig, SparsifyConfig
from export.evaluate import answer_logits, answer_loss, answers_exact
from export.model import AdderTransformer
from export.task import Domain


class SparsificationError(RuntimeError):
    """The sparse phase found no exact checkpoint."""


@dataclass
class SparseResult:
    model: AdderTransformer
    steps: int
    best_step: int
    seconds: float
    tau: float
    edge_density: float  # hard gates, mean over problems of active / possible causal edges
    neurons_kept: list[int]
    history: list[dict] = field(default_factory=list)


def geco_update(lam: float, c_hat: float | None, c: float, tau: float, sc: SparsifyConfig) -> tuple[float, float]:
    """One GECO step: C_hat = EMA(CE - tau), lambda <- clamp(lambda * exp(eta * r)).

    r = clip(C_hat / tau, -1, 1) when `geco_relative` (the default), else r = C_hat. The relative
    form is scale-free and symmetric: lambda moves at most a factor e per 1/eta steps either way,
    so a noisy spike (CE 10x tau) cannot pin it at its cap, and a slack constraint (CE << tau)
    hands the pressure back to the density as fast as a violated one takes it.
    """
    c_hat = c if c_hat is None else sc.geco_ema * c_hat + (1 - sc.geco_ema) * c
    rate = max(-1.0, min(1.0, c_hat / tau)) if sc.geco_relative else c_hat
    return min(sc.lambda_max, max(sc.lambda_min, lam * math.exp(sc.geco_rate * rate))), c_hat


def tau_margin(step: int, sc: SparsifyConfig) -> float:
    """The constraint's slack: loose while the density falls, then tightened linearly to
    tau_final_margin over the last steps, so the edges that survive must carry an exact answer."""
    if step >= sc.max_steps:
        return sc.polish_tau_margin
    start = sc.tighten_from * sc.max_steps
    if step <= start:
        return sc.tau_margin
    frac = min(1.0, (step - start) / (sc.max_steps - start))
    return sc.tau_margin + frac * (sc.tau_final_margin - sc.tau_margin)


def selection_score(edge_density: float, neurons: list[int], d_mlp: int, sc: SparsifyConfig) -> float:
    """Lower is better. Meeting the edge-density target comes first; then neurons (most of the
    compute) and edges count by their fraction kept."""
    neuron_fraction = sum(neurons) / (d_mlp * len(neurons))
    return (edge_density > sc.target_edge_density) + neuron_fraction + edge_density


@torch.no_grad()
def hard_eval(model: AdderTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, float, list[int]]:
    """One pass with the inference gates: (which problems are exact, mean per-problem active-edge
    fraction, neurons kept per layer). Exact under teacher forcing equals exact under greedy decoding."""
    logits, gates, _, _ = model(tokens[:, :-1], "hard", "hard")
    exact = answers_exact(logits, tokens)
    T = gates[0].shape[-1]
    possible = len(gates) * gates[0].shape[1] * T * (T + 1) // 2
    active = sum(g.sum(dim=(1, 2, 3)) for g in gates)  # (N,)
    neurons = [int(b.mlp.neuron_mask().sum()) for b in model.blocks]
    return exact, (active / possible).mean().item(), neurons


def sparsify(cfg: ExportConfig, domain: Domain, base: AdderTransformer, base_ce: float,
             progress: bool = True, on_eval=None) -> SparseResult:
    """Finetune a copy of the base model; return the sparsest exact checkpoint seen."""
    torch.manual_seed(cfg.seed + 2)
    sc = cfg.sparsify
    model = copy.deepcopy(base).train()
    gate_params = [b.mlp.neuron_logits for b in model.blocks]
    others = [p for n, p in model.named_parameters() if not n.endswith("neuron_logits")]
    opt = torch.optim.Adam([{"params": others, "lr": sc.lr}, {"params": gate_params, "lr": sc.neuron_gate_lr}])
    tokens = domain.tokens
    train_tokens = tokens[domain.train]
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    tau, lam, c_hat = base_ce + sc.tau_margin, sc.lambda_init, None
    d_mlp = cfg.model.d_mlp
    best, best_score, best_step, stale, history = None, math.inf, -1, 0, []
    wrong = train_tokens[:0]
    start = time.perf_counter()
    total = sc.max_steps + sc.polish_steps
    bar = tqdm(range(total), desc="sparsify", disable=None if progress else True, leave=False)
    for step in bar:
        neuron_mode = "sample" if sc.neuron_gates and step >= sc.neuron_start else "hard"
        # the polish phase trains the inference gates themselves: noise-free, the selection's own rule
        attn_mode = "sample" if step < sc.max_steps else "polish"
        # cosine decay to lr_floor: late, quieter steps let the gates settle into exact checkpoints
        decay = sc.lr_floor + (1 - sc.lr_floor) * 0.5 * (1 + math.cos(math.pi * min(step, sc.max_steps) / sc.max_steps))
        for group, base_lr in zip(opt.param_groups, (sc.lr, sc.neuron_gate_lr)):
            group["lr"] = base_lr * decay
        batch = train_tokens[torch.randint(len(train_tokens), (sc.batch_size,), generator=gen)]
        if step >= sc.max_steps:  # every step sees the few training problems still answered wrong
            batch = torch.cat([batch, wrong[:sc.polish_mine]])
        model.train()
        logits, attn_d, neuron_d = answer_logits(model, batch, attn_mode, neuron_mode)
        ce = answer_loss(logits, batch)
        tau = base_ce + tau_margin(step, sc)
        density = attn_d + (sc.neuron_weight * neuron_d if neuron_d is not None else 0.0)
        loss = density + lam * (ce - tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lam, c_hat = geco_update(lam, c_hat, ce.item() - tau, tau, sc)
        if step >= sc.max_steps:  # a cap keeps the density's pull while the last answers are repaired
            lam = min(lam, sc.polish_lambda_max)
        if (step + 1) % sc.eval_every:
            continue
        model.eval()
        exact_mask, edge_density, neurons = hard_eval(model, tokens)
        exact = exact_mask.float().mean().item()
        wrong = train_tokens[~exact_mask[domain.train]]
        score = selection_score(edge_density, neurons, d_mlp, sc)
        history.append({"step": step + 1, "ce": ce.item(), "tau": tau, "lambda": lam, "exact": exact,
                        "edge_density": edge_density, "neurons": neurons})
        if on_eval:
            on_eval(history[-1])
        bar.set_postfix(ce=f"{ce.item():.3f}", lam=f"{lam:.2f}", exact=f"{exact:.4f}",
                        dens=f"{edge_density:.4f}", neurons=sum(neurons))
        if exact == 1.0 and score < best_score - 1e-6:
            best, best_score, best_step, stale = copy.deepcopy(model.state_dict()), score, step + 1, 0
        else:
            stale += 1
            # stop on a plateau, but only once a kept checkpoint meets the density target
            if best_score < 1.0 and stale >= sc.patience_evals:
                break
    if best is None and not sc.require_exact:
        best = copy.deepcopy(model.state_dict())
    if best is None:
        raise SparsificationError(f"no checkpoint in {step + 1} steps was exact on all 10,000 problems "
                                  "with the inference gates; raise sparsify.max_steps or lower tau_margin")
    model.load_state_dict(best)
    model.eval()
    _, edge_density, neurons = hard_eval(model, tokens)
    return SparseResult(model=model, steps=step + 1, best_step=best_step,
                        seconds=time.perf_counter() - start, tau=tau, edge_density=edge_density,
                        neurons_kept=neurons, history=history)
