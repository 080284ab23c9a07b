"""`python -m export`: build, prove and write the dense and sparse builds into a model repository."""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from contract import DENSE_MODEL, SPARSE_MODEL
from export.config import ExportConfig, tiny_config
from export.pipeline import run_export
from export.sparsify import SparsificationError
from export.verify import VerificationError


def load_config(args) -> ExportConfig:
    cfg = tiny_config() if args.tiny else ExportConfig()
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.config:
        overrides = json.loads(Path(args.config).read_text())
        for section, values in overrides.items():
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **values)}) \
                if isinstance(values, dict) else replace(cfg, **{section: values})
    return cfg


def summary(report) -> str:
    d, s = report.manifests[DENSE_MODEL], report.manifests[SPARSE_MODEL]
    rows = [("stage seconds", ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()), ""),
            ("total seconds", f"{sum(report.seconds.values()):.1f}", ""),
            ("", "adder-dense", "adder-sparse"),
            ("exact match (10,000)", f"{d['accuracy']['correct']}", f"{s['accuracy']['correct']}"),
            ("train / test", f"{d['accuracy']['train']:.4f} / {d['accuracy']['test']:.4f}",
             f"{s['accuracy']['train']:.4f} / {s['accuracy']['test']:.4f}"),
            ("edge density", f"{d['edges']['density']:.2%}", f"{s['edges']['density']:.2%}"),
            ("edges per problem (mean/min/max)",
             f"{d['edges']['per_problem_mean']:.1f}",
             f"{s['edges']['per_problem_mean']:.2f} / {s['edges']['per_problem_min']} / {s['edges']['per_problem_max']}"),
            ("distinct edges", str(d['edges']['distinct']), str(s['edges']['distinct'])),
            ("MLP neurons kept", str(d['neurons']['kept']), str(s['neurons']['kept'])),
            ("parameters total / kept", f"{d['parameters']['total']} / {d['parameters']['kept']}",
             f"{s['parameters']['total']} / {s['parameters']['kept']}"),
            ("ONNX nodes", str(d['onnx_nodes']), str(s['onnx_nodes']))]
    for batch in (1, 1024):
        dl, sl = report.latency_ms[(DENSE_MODEL, batch)], report.latency_ms[(SPARSE_MODEL, batch)]
        rows.append((f"ORT ms/call batch {batch}", f"{dl:.3f}", f"{sl:.3f}  ({dl / sl:.2f}x faster)"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}}  {r[1]:<22} {r[2]}" for r in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--config", help="JSON file of overrides, e.g. {\"sparsify\": {\"lr\": 0.002}}")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long config for smoke tests (not exact)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = load_config(args)
    try:
        report = run_export(cfg, args.repository, progress=not args.quiet)
    except SparsificationError as err:
        print(f"export failed its target: {err}; nothing was written", file=sys.stderr)
        return 1
    except VerificationError as err:
        print(f"export failed verification: {err}; nothing was written", file=sys.stderr)
        return 1
    print(summary(report))
    print(f"model repository written to {args.repository}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
