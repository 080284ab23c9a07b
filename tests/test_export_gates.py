"""Gate maths: the Bernoulli sample, its straight-through gradient, no renormalisation, GECO."""

import math

import torch

from export.config import ModelConfig, SparsifyConfig
from export.model import GatedSelfAttention, logistic_gate
from export.sparsify import geco_update


def test_logistic_gate_is_a_bernoulli_draw_of_sigmoid_g():
    torch.manual_seed(0)
    g = torch.full((200_000,), 0.7)
    sample = logistic_gate(g)
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    assert abs(sample.mean().item() - torch.sigmoid(torch.tensor(0.7)).item()) < 0.005


def test_straight_through_gradient_is_that_of_the_noisy_sigmoid():
    g = torch.linspace(-3, 3, 101, requires_grad=True)
    torch.manual_seed(1)
    logistic_gate(g).sum().backward()
    torch.manual_seed(1)  # the same noise draw
    u = torch.rand_like(g).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid(g.detach() + torch.log(u) - torch.log1p(-u))
    assert torch.allclose(g.grad, s * (1 - s), atol=1e-6)


def _attention(gate_bias=0.0):
    torch.manual_seed(0)
    return GatedSelfAttention(ModelConfig(n_layers=1, n_heads=2, d_model=8, d_mlp=16, gate_bias=gate_bias))


def test_kept_weights_are_not_renormalised_and_closed_heads_output_zero():
    attn = _attention()
    x = torch.randn(3, 10, 8)
    y_dense, _, _ = attn(x, "off")
    y_hard, gates, _ = attn(x, "hard")
    assert not torch.allclose(y_dense, y_hard)
    with torch.no_grad():
        attn.W_Q.zero_()  # every logit 0 -> gate 1[0 > 0] = 0 everywhere
    y_closed, gates, _ = attn(x, "hard")
    assert gates.sum() == 0 and torch.count_nonzero(y_closed) == 0


def test_hard_gate_keeps_exactly_the_positive_logits_under_the_causal_mask():
    attn = _attention()
    x = torch.randn(2, 10, 8)
    _, gates, _ = attn(x, "hard")
    q = torch.einsum("btd,hde->bhte", x, attn.W_Q)
    k = torch.einsum("btd,hde->bhte", x, attn.W_K)
    logits = q @ k.transpose(-1, -2) / math.sqrt(attn.d_head)
    expected = (logits > 0) & torch.tril(torch.ones(10, 10, dtype=torch.bool))
    assert torch.equal(gates.bool(), expected)


def test_polish_gate_has_the_inference_values_and_the_sigmoid_gradient():
    attn = _attention()
    x = torch.randn(2, 10, 8)
    _, hard, _ = attn(x, "hard")
    _, polish, _ = attn(x, "polish")
    assert torch.equal(polish.detach(), hard)  # the very gates the served model uses
    assert not hard.requires_grad
    (grad,) = torch.autograd.grad(polish.sum(), attn.W_Q)
    q = torch.einsum("btd,hde->bhte", x, attn.W_Q)
    k = torch.einsum("btd,hde->bhte", x, attn.W_K)
    g = q @ k.transpose(-1, -2) / math.sqrt(attn.d_head)
    causal = torch.tril(torch.ones(10, 10))
    (expected,) = torch.autograd.grad((torch.sigmoid(g) * causal).sum(), attn.W_Q)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_geco_multiplier_rises_above_tau_falls_below_and_stays_clamped():
    for relative in (True, False):
        sc = SparsifyConfig(geco_rate=0.5, geco_ema=0.0, lambda_min=0.01, lambda_max=100.0, geco_relative=relative)
        lam, c_hat = geco_update(1.0, None, 0.2, 0.1, sc)
        assert lam > 1.0
        lam_down, _ = geco_update(1.0, None, -0.05, 0.1, sc)
        assert lam_down < 1.0
        for _ in range(1000):
            lam, c_hat = geco_update(lam, c_hat, 5.0, 0.1, sc)
        assert lam == 100.0
        for _ in range(1000):
            lam, c_hat = geco_update(lam, c_hat, -0.1, 0.1, sc)
        assert lam == 0.01


def test_relative_geco_rate_is_scale_free_and_clipped():
    sc = SparsifyConfig(geco_rate=0.1, geco_ema=0.0, geco_relative=True)
    half, _ = geco_update(1.0, None, 0.05, 0.1, sc)  # C / tau = 0.5
    spike, _ = geco_update(1.0, None, 50.0, 0.1, sc)  # clipped to 1: one spike cannot pin lambda
    slack, _ = geco_update(1.0, None, -0.1, 0.1, sc)  # CE = 0: the fastest release
    assert abs(half - math.exp(0.05)) < 1e-12
    assert abs(spike - math.exp(0.1)) < 1e-12 and abs(slack - math.exp(-0.1)) < 1e-12


def test_geco_ema_smooths_the_constraint():
    sc = SparsifyConfig(geco_ema=0.9)
    _, c_hat = geco_update(1.0, 0.0, 1.0, 0.1, sc)
    assert abs(c_hat - 0.1) < 1e-12
