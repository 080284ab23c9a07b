"""Draw the paper's v1 figure: per problem, the base model's edges above, the sparse model's below,
necessary edges solid and redundant ones dashed."""

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from export.task import problem_text  # noqa: E402

HEAD_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


@dataclass(frozen=True)
class FigureProblem:
    a: int
    b: int
    base_edges: list  # (layer, head, query, key)
    sparse_edges: list  # active on this problem
    necessary: set = field(default_factory=set)  # of sparse_edges: closing it alone changes the answer


def _panel(ax, title: str, edges, n_layers: int, text: str, alpha: float, necessary=None) -> None:
    """Nodes: layers x token positions; an edge (l, h, q, k) joins (k, l - 1) to (q, l)."""
    T = len(text)
    for l in range(n_layers):
        ax.scatter(range(T), [l] * T, s=22, color="white", edgecolor="black", zorder=3)
        ax.text(-0.9, l, f"L{l}", ha="right", va="center", fontsize=9)
    for p, ch in enumerate(text):
        ax.text(p, -1.15, ch, ha="center", va="center", fontsize=12, family="monospace")
    for edge in edges:
        l, h, q, k = edge
        dashed = necessary is not None and edge not in necessary
        shift = (h - 1.5) * 0.08 if necessary is not None else 0.0  # heads sharing a (key, query) pair stay apart
        ax.plot([k + shift, q + shift], [l - 1 if l else -0.8, l], color=HEAD_COLOURS[h % len(HEAD_COLOURS)], alpha=alpha,
                lw=1.0 if dashed else 1.6, ls=(0, (3, 2)) if dashed else "-", zorder=2)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-2.2, T)
    ax.set_ylim(-1.6, n_layers - 0.5)
    ax.axis("off")


def draw_figure(path: Path, problems: list[FigureProblem], n_layers: int) -> None:
    """Write the PNG: one column per problem, base model above, sparse model below."""
    fig, axes = plt.subplots(2, len(problems), figsize=(4.6 * len(problems), 7.4), squeeze=False)
    for col, p in enumerate(problems):
        text = problem_text(p.a, p.b)
        _panel(axes[0, col], f"{text} base: {len(p.base_edges)} edges", p.base_edges, n_layers, text, alpha=0.12)
        _panel(axes[1, col], f"sparse: {len(p.sparse_edges)} edges, {len(p.necessary)} necessary",
               p.sparse_edges, n_layers, text, alpha=0.9, necessary=p.necessary)
    heads = max((e[1] for p in problems for e in p.sparse_edges), default=0) + 1
    legend = [Line2D([], [], color="black", lw=1.6, label="necessary: closing it alone changes the answer"),
              Line2D([], [], color="black", lw=1.0, ls=(0, (3, 2)), label="redundant")]
    legend += [Line2D([], [], color=HEAD_COLOURS[h % len(HEAD_COLOURS)], lw=2, label=f"head {h}")
               for h in range(heads)]
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=9, frameon=False)
    fig.suptitle("Attention edges (query \u2190 key) by layer: base vs sparse model", fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
