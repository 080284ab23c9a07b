"""`python -m export.bench_edge_mask [REPOSITORY]`: in-process ORT latency of model.onnx vs explain.onnx.

Add runs model.onnx, which has no mask input; Explain runs explain.onnx. This prints what the mask
costs a graph at batch 1 (all edges open), and what one Explain costs (its two runs: E + 1 rows, 1 row).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from contract import EXPLAIN_FILE, INPUT_A, INPUT_B, INPUT_EDGE_MASK, MANIFEST_FILE, SPARSE_MODEL, model_dir
from export.verify import session


BLOCK = 50  # calls in a row per case: a case right after a big batch would pay its cache misses


def median_ms(cases: list, calls: int) -> list[float]:
    """Median ms per call of each (session, feed); the cases take turns in blocks, so load on a shared
    machine falls on all of them alike."""
    times = [[] for _ in cases]
    for _ in range(max(1, calls // BLOCK)):
        for (sess, feed), spent in zip(cases, times):
            sess.run(None, feed)  # warm after the other case
            for _ in range(BLOCK):
                start = time.perf_counter()
                sess.run(None, feed)
                spent.append(time.perf_counter() - start)
    return [float(np.median(t) * 1e3) for t in times]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.bench_edge_mask", description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path, nargs="?", default=Path("model_repository"))
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    folder = model_dir(args.repository, SPARSE_MODEL)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    n_edges = manifest["explain"]["edges"]
    served = session((folder / manifest["file"]).read_bytes())
    explain = session((folder / EXPLAIN_FILE).read_bytes())
    one = {INPUT_A: np.array([36]), INPUT_B: np.array([28])}
    rows = n_edges + 1
    closed_alone = ~np.eye(rows, n_edges, k=-1, dtype=bool)
    cases = [("model.onnx, batch 1", served, one),
             ("explain.onnx, batch 1, all open", explain, {**one, INPUT_EDGE_MASK: np.ones((1, n_edges), bool)}),
             (f"explain.onnx, batch {rows} (one Explain's ablations)", explain,
              {INPUT_A: np.full(rows, 36), INPUT_B: np.full(rows, 28), INPUT_EDGE_MASK: closed_alone})]
    results = list(zip([name for name, _, _ in cases], median_ms([(s, f) for _, s, f in cases], args.calls)))
    base = results[0][1]
    print(f"median of {args.calls} session.run calls, one intra-op thread ({args.repository})")
    for name, ms in results:
        print(f"  {name:<50} {ms * 1e3:8.1f} us   {ms / base:5.2f}x model.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
