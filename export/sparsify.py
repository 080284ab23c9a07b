"""Post-train the base model to sparse attention, then sparse MLP neurons, under GECO constraints.

Each phase minimises   E[density]   subject to   CE <= tau,  tau = base CE + margin,
as the Lagrangian  density + lambda * (CE - tau), with lambda <- lambda * exp(eta * EMA(CE - tau)).
Checkpoints are selected on the *deterministic* gates: the sparsest one that is still exact on all
10,000 problems (noisy-gate CE can sit under tau while hard-gate accuracy is far lower).

The schedule (see SparsifyConfig): an attention round; while no exact checkpoint is under the
edge target, repair (polish) and noisy rounds in turn, up to `extra_rounds`; then the circuit's
edge set is frozen, a neuron phase gates the MLP (attention polished and still penalised), and
repair rounds make it exact if it is not.
"""

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from export.config import ExportConfig, SparsifyConfig
from export.evaluate import answer_logits, answer_loss, answers_exact
from export.model import AdderTransformer, freeze_edge_set
from export.task import Domain


class SparsificationError(RuntimeError):
    """The sparse phase found no exact checkpoint that meets its targets."""


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
    rounds: list[str] = field(default_factory=list)  # the phases run, in order

    def attention_density(self) -> float | None:
        """The sparsest exact edge density the attention phases reached (before the edge set froze)."""
        return attention_density(self.history)


ATTENTION_PHASES = ("attention", "polish")  # the rounds that run before the edge set is frozen


def attention_density(history: list[dict]) -> float | None:
    """The sparsest exact checkpoint's edge density among the attention rounds of a sparsify history."""
    exact = [h["edge_density"] for h in history if h["phase"] in ATTENTION_PHASES and h["exact"] == 1.0]
    return min(exact, default=None)


@dataclass(frozen=True)
class Phase:
    """One training run of the schedule: which gates are noisy, what is penalised, what qualifies."""

    name: str
    steps: int
    attn_mode: str  # "sample" (noisy), "polish" (inference gates, trained) or "hard" (fixed rule)
    neuron_mode: str  # "sample" (noisy neuron gates) or "hard"
    tau_margin: float
    lr: float
    gate_lr: float  # neuron gate logits
    lambda_max: float
    mine_wrong: int  # still-wrong training problems added to every batch
    early_stop: bool = True  # end once the best qualifying checkpoint stops improving (patience_evals)


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


def edge_score(edge_density: float, sc: SparsifyConfig) -> float:
    """Attention phases: lower is better, under 1 exactly when the edge-density target is met."""
    return (edge_density > sc.target_edge_density) + edge_density


def batch_edge_density(gates: list[torch.Tensor]) -> torch.Tensor:
    """Active / possible causal edges over a batch of per-layer (B, h, T, T) gates: the hard density as
    its value, and (polish gates) sigmoid's gradient on the edges of the frozen set only."""
    batch, heads, positions = gates[0].shape[0], gates[0].shape[1], gates[0].shape[-1]
    possible = len(gates) * heads * positions * (positions + 1) // 2
    return sum(layer.sum() for layer in gates) / (possible * batch)


@torch.no_grad()
def hard_eval(model: AdderTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, float, list[int], list]:
    """One pass with the inference gates: (which problems are exact, mean per-problem active-edge
    fraction, neurons kept per layer, per-layer gates). Exact under teacher forcing equals exact
    under greedy decoding."""
    logits, gates, _, _ = model(tokens[:, :-1], "hard", "hard")
    exact = answers_exact(logits, tokens)
    neurons = [int(b.mlp.neuron_mask().sum()) for b in model.blocks]
    return exact, batch_edge_density(gates).item(), neurons, gates


class Schedule:
    """Runs phases on one model, keeping the best qualifying checkpoint across all of them."""

    def __init__(self, cfg: ExportConfig, domain: Domain, base: AdderTransformer, base_ce: float, progress: bool):
        self.cfg, self.sc, self.domain, self.base_ce, self.progress = cfg, cfg.sparsify, domain, base_ce, progress
        self.model = copy.deepcopy(base).train()
        self.tokens = domain.tokens
        self.train_tokens = self.tokens[domain.train]
        self.gen = torch.Generator().manual_seed(cfg.seed + 3)
        self.lam, self.c_hat, self.step, self.tau = self.sc.lambda_init, None, 0, base_ce + self.sc.tau_margin
        self.best, self.best_score, self.best_step = None, math.inf, -1
        self.history, self.rounds = [], []
        self.wrong = self.train_tokens[:0]

    def optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        gates, weights = [], []
        for name, p in self.model.named_parameters():
            (gates if name.endswith("neuron_logits") else weights).append(p)
        return torch.optim.Adam([{"params": weights, "lr": phase.lr}, {"params": gates, "lr": phase.gate_lr}])

    def run(self, phase: Phase, score_of) -> None:
        """Train `phase.steps` steps (or until its best stops improving); `score_of(edge_density,
        neurons)` ranks exact checkpoints (lower is better, None: does not qualify)."""
        sc, model = self.sc, self.model
        opt = self.optimizer(phase)
        self.rounds.append(phase.name)
        self.c_hat, phase_best, stale = None, math.inf, 0
        bar = tqdm(range(phase.steps), desc=phase.name, disable=None if self.progress else True, leave=False)
        for i in bar:
            # cosine decay to lr_floor: late, quieter steps let the gates settle into exact checkpoints
            decay = sc.lr_floor + (1 - sc.lr_floor) * 0.5 * (1 + math.cos(math.pi * i / phase.steps))
            for group, base_lr in zip(opt.param_groups, (phase.lr, phase.gate_lr)):
                group["lr"] = base_lr * decay
            batch = self.train_tokens[torch.randint(len(self.train_tokens), (sc.batch_size,), generator=self.gen)]
            batch = torch.cat([batch, self.wrong[:phase.mine_wrong]])
            model.train()
            self.tau = self.base_ce + phase.tau_margin
            loss, ce = self.loss(phase, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.update_multipliers(phase, ce)
            self.step += 1
            if (i + 1) % sc.eval_every:
                continue
            score = self.evaluate(phase, ce.item(), score_of, bar)
            if score is not None and score < phase_best - 1e-6:
                phase_best, stale = score, 0
            else:
                stale += 1
                if phase.early_stop and phase_best < 1.0 and stale >= sc.patience_evals:
                    break

    def loss(self, phase: Phase, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the Lagrangian density + lambda * (CE - tau), CE) on one batch."""
        logits, attn_d, neuron_d = answer_logits(self.model, batch, phase.attn_mode, phase.neuron_mode)
        ce = answer_loss(logits, batch)
        # every density whose gates carry a gradient is penalised: hard gates have none
        density = sum(d for d in (None if phase.attn_mode == "hard" else attn_d, neuron_d) if d is not None)
        return density + self.lam * (ce - self.tau), ce

    def update_multipliers(self, phase: Phase, ce: torch.Tensor) -> None:
        self.lam, self.c_hat = geco_update(self.lam, self.c_hat, ce.item() - self.tau, self.tau, self.sc)
        self.lam = min(self.lam, phase.lambda_max)

    def multipliers(self) -> dict:
        """The Lagrange multipliers, for the history."""
        return {"lambda": self.lam}

    def evaluate(self, phase: Phase, ce: float, score_of, bar) -> float | None:
        self.model.eval()
        exact_mask, edge_density, neurons, _ = hard_eval(self.model, self.tokens)
        exact = exact_mask.float().mean().item()
        self.wrong = self.train_tokens[~exact_mask[self.domain.train]]
        self.history.append({"step": self.step, "phase": phase.name, "ce": ce, "tau": self.tau,
                             **self.multipliers(), "exact": exact, "edge_density": edge_density,
                             "neurons": neurons})
        bar.set_postfix(ce=f"{ce:.3f}", **{name: f"{value:.2f}" for name, value in self.multipliers().items()},
                        exact=f"{exact:.4f}", dens=f"{edge_density:.4f}", neurons=sum(neurons))
        score = score_of(edge_density, neurons) if exact == 1.0 else None
        if score is not None and score < self.best_score - 1e-6:
            self.best, self.best_score, self.best_step = copy.deepcopy(self.model.state_dict()), score, self.step
        return score

    def restore_best(self) -> None:
        if self.best is not None:
            self.model.load_state_dict(self.best)


def attention_phases(sc: SparsifyConfig) -> list[Phase]:
    """The first noisy round, then repair and noisy rounds in turn (used only while off target)."""
    noisy = Phase("attention", sc.max_steps, "sample", "hard", sc.tau_margin, sc.lr, 0.0, sc.lambda_max, 0)
    polish = Phase("polish", sc.polish_steps, "polish", "hard", sc.polish_tau_margin, sc.lr * sc.lr_floor,
                   0.0, sc.polish_lambda_max, sc.polish_mine)
    extra = [polish if k % 2 == 0 else noisy for k in range(sc.extra_rounds)]
    return [noisy] + extra


def neuron_phases(sc: SparsifyConfig) -> list[Phase]:
    """Noisy neuron gates with the attention gates polished (both densities penalised, so edges
    inside the frozen set do not spread to more problems), then repair rounds with the neurons fixed."""
    # no early stop: an exact checkpoint early in the phase keeps far more neurons than its end
    neurons = Phase("neurons", sc.neuron_steps, "polish", "sample", sc.neuron_tau_margin, sc.neuron_lr,
                    sc.neuron_gate_lr, sc.lambda_max, 0, early_stop=False)
    polish = Phase("neuron polish", sc.polish_steps, "polish", "hard", sc.polish_tau_margin, sc.lr * sc.lr_floor,
                   0.0, sc.polish_lambda_max, sc.polish_mine)
    return [neurons] + [polish] * sc.neuron_repair_rounds


def neuron_score(edge_density: float, neurons: list[int], d_mlp: int, sc: SparsifyConfig) -> float | None:
    """Neuron phases: lower is better; None unless both the edge and the neuron targets are met."""
    fraction = sum(neurons) / (d_mlp * len(neurons))
    if edge_density > sc.target_edge_density or fraction > sc.target_neuron_fraction:
        return None
    return fraction + edge_density


def sparsify(cfg: ExportConfig, domain: Domain, base: AdderTransformer, base_ce: float,
             progress: bool = True) -> SparseResult:
    """Finetune a copy of the base model; return the sparsest exact checkpoint that meets the targets."""
    torch.manual_seed(cfg.seed + 2)
    sc, d_mlp = cfg.sparsify, cfg.model.d_mlp
    start = time.perf_counter()
    run = Schedule(cfg, domain, base, base_ce, progress)
    for phase in attention_phases(sc):
        if phase.name == "attention" and run.best is not None:
            run.restore_best()  # a noisy retry starts from the sparsest exact circuit so far
        run.run(phase, lambda density, neurons: edge_score(density, sc))
        if run.best_score < 1.0:
            break
    if run.best is None and sc.require_exact:
        raise SparsificationError(f"no exact checkpoint in {run.step} steps ({', '.join(run.rounds)}); "
                                  "raise sparsify.extra_rounds or lower tau_margin")
    if run.best_score >= 1.0 and sc.require_exact:
        best_density = min(h["edge_density"] for h in run.history if h["exact"] == 1.0)
        raise SparsificationError(f"best exact edge density {best_density:.4%} is over the target "
                                  f"{sc.target_edge_density:.4%} after {run.step} steps ({', '.join(run.rounds)})")
    run.restore_best()
    run.model.eval()
    _, _, _, gates = hard_eval(run.model, run.tokens)
    freeze_edge_set(run.model, gates)
    run.best, run.best_score = None, math.inf  # from here only checkpoints meeting both targets qualify
    # the first repair round always runs (the noisy phase's end is rarely exact but the sparsest);
    # further ones only while nothing qualifies
    for index, phase in enumerate(neuron_phases(sc)):
        run.run(phase, lambda density, neurons: neuron_score(density, neurons, d_mlp, sc))
        if index >= 1 and run.best is not None:
            break
    if run.best is None and sc.require_exact:
        raise SparsificationError(f"no exact checkpoint keeps <= {sc.target_neuron_fraction:.0%} of MLP neurons at "
                                  f"<= {sc.target_edge_density:.4%} edges after {run.step} steps "
                                  f"({', '.join(run.rounds)}); raise sparsify.neuron_repair_rounds")
    if run.best is None:  # tiny configs (require_exact off): the last state
        run.best = copy.deepcopy(run.model.state_dict())
    run.restore_best()
    run.model.eval()
    _, edge_density, neurons, _ = hard_eval(run.model, run.tokens)
    return SparseResult(model=run.model, steps=run.step, best_step=run.best_step,
                        seconds=time.perf_counter() - start, tau=run.tau, edge_density=edge_density,
                        neurons_kept=neurons, history=run.history, rounds=run.rounds)
