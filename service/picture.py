"""Terminal pictures: the attention edges one sum used (layers x 10 token positions) and a circuit summary."""

from collections import defaultdict

from contract.domain import POSITION_NAMES, problem_text


def problem_tokens(a: int, b: int, answer: str) -> list[str]:
    """The 11 tokens of `a1 a2 + b1 b2 = c1..c5` for one problem."""
    return list(problem_text(a, b, answer))


def trace_picture(a: int, b: int, response, n_layers: int = 0, n_positions: int = len(POSITION_NAMES)) -> str:
    """One block per layer: a row per query position that attends, a column per key position.

    A cell shows the head that makes the query attend to the key ('*' when several heads do).
    """
    tokens = problem_tokens(a, b, response.answer)[:n_positions]
    cells: dict[int, dict[int, dict[int, list[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for e in response.edges:
        cells[e.layer][e.query][e.key].append(e.head)
    n_layers = max(n_layers, max(cells, default=-1) + 1)
    lines = [f"{a} + {b} = {response.sum}   answer {response.answer} from {response.model} "
             f"v{response.model_version}: {len(response.edges)} active attention edges",
             "",
             " " * 17 + "key " + "".join(f"{t:>3}" for t in tokens),
             " " * 21 + "".join(f"{p:>3}" for p in range(n_positions))]
    for layer in range(n_layers):
        rows = cells.get(layer, {})
        if not rows:
            lines.append(f"layer {layer}          (no edges)")
        for i, query in enumerate(sorted(rows)):
            prefix = f"layer {layer}" if i == 0 else ""
            marks = []
            for key in range(n_positions):
                heads = rows[query].get(key, [])
                marks.append("." if not heads else str(heads[0]) if len(heads) == 1 else "*")
            label = f"q{query} {tokens[query]!r}" if query < len(tokens) else f"q{query}"
            lines.append(f"{prefix:<9}{label:<12}" + "".join(f"{m:>3}" for m in marks))
    lines += ["", "rows: query positions (the token there predicts the next one); cells: head number, "
                  "* = several heads"]
    return "\n".join(lines)


def _position(p: int) -> str:
    return POSITION_NAMES[p] if p < len(POSITION_NAMES) else str(p)


def circuit_summary(c, limit: int = 40) -> str:
    """Readable summary of a GetCircuitResponse; lists the `limit` most frequent edges."""
    kept, total = c.parameters_kept, c.parameters_total
    share = f" ({kept / total:.1%})" if total else ""
    stats, carry, plain = c.edges_per_problem, c.edges_per_problem_carry, c.edges_per_problem_no_carry
    dead = ", ".join(f"L{h.layer}H{h.head}" for h in c.dead_heads) or "none"
    lines = [
        f"{c.model} v{c.model_version}   sha256 {c.sha256[:16]}…",
        f"layers {c.n_layers} · heads {c.n_heads} · positions {c.n_positions} · gate {c.gate_rule}",
        f"accuracy       {c.accuracy.correct}/{c.accuracy.total} (exact match {c.accuracy.exact_match:.4f})",
        f"parameters     {kept:,} kept of {total:,}{share} · neurons kept {list(c.neurons_kept)} "
        f"of {list(c.neurons_total)}",
        f"edges          {len(c.edges)} distinct over {c.domain_size:,} problems, "
        f"{c.possible_edges_per_problem} possible per problem",
        f"per problem    mean {stats.mean:.2f} (min {stats.min}, max {stats.max}) · density {c.density:.2%}",
        f"  with carry   mean {carry.mean:.2f} (min {carry.min}, max {carry.max}) over {carry.problems:,} problems",
        f"  no carry     mean {plain.mean:.2f} (min {plain.min}, max {plain.max}) over {plain.problems:,} problems",
        f"dead heads     {dead}",
        "",
        "layer head  query <- key        fires on",
    ]
    ranked = sorted(c.edges, key=lambda e: (-e.count, e.edge.layer, e.edge.head, e.edge.query, e.edge.key))
    for e in ranked[:limit]:
        bar = "█" * max(1, round(20 * e.frequency))
        lines.append(f"  L{e.edge.layer}   H{e.edge.head}   {e.edge.query:>2} {_position(e.edge.query):<3}<- "
                     f"{e.edge.key:>2} {_position(e.edge.key):<3}  {e.frequency:7.2%} {bar}")
    if len(ranked) > limit:
        lines.append(f"  … {len(ranked) - limit} more edges (--limit 0 lists all)")
    return "\n".join(lines)


def explain_table(a: int, b: int, response) -> str:
    """One line per active edge: necessary or redundant, the answer without it, the first digit it changes."""
    tokens = problem_tokens(a, b, response.answer)
    necessary = sum(x.necessary for x in response.edges)
    lines = [f"{a} + {b} = {response.sum}   answer {response.answer} from {response.model} v{response.model_version}: "
             f"{len(response.edges)} active attention edges, {necessary} necessary",
             "",
             f"{'edge (layer head query<-key)':<34}{'closed alone':<14}{'answer without':<16}digit changed"]
    for x in response.edges:
        e = x.edge
        where = f"{POSITION_NAMES[e.query]}<-{POSITION_NAMES[e.key]} ({tokens[e.query]}<-{tokens[e.key]})"
        changed = "-" if x.changed_digit < 0 else f"c{x.changed_digit + 1} ({response.answer[x.changed_digit]} -> " \
                                                   f"{x.answer_without[x.changed_digit]})"
        lines.append(f"L{e.layer} H{e.head} {where:<27}{'NECESSARY' if x.necessary else 'redundant':<14}"
                     f"{x.answer_without:<16}{changed}")
    verdict = "right" if response.necessary_only_right else "WRONG: the redundant edges are needed together"
    lines += ["", f"only the {necessary} necessary edges open: {response.necessary_only_answer} ({verdict})"]
    return "\n".join(lines)
