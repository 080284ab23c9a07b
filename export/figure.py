"""Draw the seed figure: one problem's attention edges, base model above, sparse model below."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from export.task import problem_text  # noqa: E402

HEAD_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _panel(ax, title: str, edges, n_layers: int, text: str, alpha: float) -> None:
    """Nodes: layers x token positions; an edge (l, h, q, k) joins (k, l - 1) to (q, l)."""
    T = len(text)
    for l in range(n_layers):
        ax.scatter(range(T), [l] * T, s=28, color="white", edgecolor="black", zorder=3)
        ax.text(-1.2, l, f"Layer {l}", ha="right", va="center", fontsize=9)
    for p, ch in enumerate(text):
        ax.text(p, -1.15, ch, ha="center", va="center", fontsize=12, family="monospace")
    for l, h, q, k in edges:
        ax.plot([k, q], [l - 1 if l else -0.8, l], color=HEAD_COLOURS[h % len(HEAD_COLOURS)],
                alpha=alpha, lw=1.2, zorder=2)
    ax.set_title(f"{title}: {len(edges)} attention edges", fontsize=11)
    ax.set_xlim(-3.5, T)
    ax.set_ylim(-1.6, n_layers - 0.5)
    ax.axis("off")


def draw_figure(path: Path, a: int, b: int, base_edges, sparse_edges, n_layers: int) -> None:
    """Write the PNG comparing the base and sparse models' edges on a + b."""
    text = problem_text(a, b)
    fig, axes = plt.subplots(2, 1, figsize=(8, 8.5))
    _panel(axes[0], "Base model", base_edges, n_layers, text, alpha=0.12)
    _panel(axes[1], "Sparse model", sparse_edges, n_layers, text, alpha=0.9)
    fig.suptitle(f"{text}: attention edges (query \u2190 key), colour = head", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
