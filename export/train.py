"""Train the dense base model until it answers all 10,000 problems exactly, then anneal and stop."""

import pickle
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from export.config import ExportConfig
from export.fingerprint import base_fingerprint
from export.evaluate import answer_logits, answer_loss, answers_exact, exact_mask
from export.model import AdderTransformer, load_state
from export.task import Domain


@dataclass
class BaseResult:
    model: AdderTransformer
    steps: int
    seconds: float
    final_ce: float  # mean answer CE over the training split (sets tau for the sparse phase)
    train_accuracy: float
    test_accuracy: float


def train_base(cfg: ExportConfig, domain: Domain, progress: bool = True) -> BaseResult:
    """AdamW with warmup; once exact on the whole domain, decay lr linearly to 0 and stop."""
    torch.manual_seed(cfg.seed)
    tc = cfg.base
    model = AdderTransformer(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.98))
    tokens = domain.tokens
    train_tokens = tokens[domain.train]
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    start, decay_from = time.perf_counter(), None
    bar = tqdm(range(tc.max_steps), desc="base", disable=None if progress else True, leave=False)
    for step in bar:
        lr = tc.lr * min(1.0, (step + 1) / tc.warmup_steps)
        if decay_from is not None:
            lr = tc.lr * max(0.0, 1 - (step - decay_from) / tc.decay_steps)
            if step - decay_from >= tc.decay_steps:
                break
        for group in opt.param_groups:
            group["lr"] = lr
        batch = train_tokens[torch.randint(len(train_tokens), (tc.batch_size,), generator=gen)]
        model.train()
        logits, _, _ = answer_logits(model, batch, "off", "off")
        loss = answer_loss(logits, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if decay_from is not None or (step + 1) % tc.eval_every:
            continue
        # the whole-domain check (seconds) only once this batch is all exact: it cannot be 100% before
        acc = answers_exact(logits, batch).float().mean().item()
        if acc == 1.0:
            model.eval()
            acc = exact_mask(model, tokens, gated=False).float().mean().item()
            if acc == 1.0:
                decay_from = step + 1
        bar.set_postfix(loss=f"{loss.item():.2e}", exact=f"{acc:.4f}")
    model.eval()
    exact = exact_mask(model, tokens, gated=False)
    with torch.no_grad():
        ce = answer_loss(answer_logits(model, train_tokens, "off", "off")[0], train_tokens).item()
    return BaseResult(
        model=model, steps=step + 1, seconds=time.perf_counter() - start, final_ce=ce,
        train_accuracy=exact[domain.train].float().mean().item(),
        test_accuracy=exact[domain.test].float().mean().item(),
    )


def read_cache(cache: Path) -> dict | None:
    """The cached base's contents, or None when absent or unreadable (then it is simply retrained)."""
    try:
        return torch.load(cache, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None


def train_or_reuse_base(cfg: ExportConfig, domain: Domain, cache: Path, progress: bool = True) -> BaseResult:
    """Train the base model, or reload it from `cache` if that was trained by the same code and settings.

    Iterating on the sparse phase then skips minutes of identical (seeded) base training.
    """
    key = base_fingerprint(cfg)
    blob = read_cache(cache)
    if blob is not None:
        if blob.get("key") == key:
            model = load_state(AdderTransformer(cfg.model), blob["state_dict"])
            return BaseResult(model=model.eval(), **blob["result"])
    result = train_base(cfg, domain, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    stats = {f.name: getattr(result, f.name) for f in fields(result) if f.name != "model"}
    torch.save({"key": key, "state_dict": result.model.state_dict(), "result": stats}, cache)
    return result
