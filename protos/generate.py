"""Regenerate the committed Python stubs in service/generated/ from protos/ with grpcio-tools.

Usage: python protos/generate.py [--out DIR]   (default: service/generated)

protoc writes absolute imports (`from adder.v1 import adder_pb2`) that only resolve if the output
folder is on sys.path; we rewrite them to relative imports so the stubs live inside the `service`
package. tests/test_service_protos.py regenerates into a temp dir and fails on any difference.
"""

import argparse
import re
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent
PROTOS = ("adder/v1/adder.proto", "inference/grpc_predict_v2.proto")
DEFAULT_OUT = ROOT.parent / "service" / "generated"
HEADER = '"""Generated protobuf and gRPC stubs: regenerate with `make protos`, never edit by hand."""\n'


def generate(out: Path) -> list[Path]:
    """Compile every proto into `out`, fix imports and add package markers; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    for proto in PROTOS:
        args = ["protoc", f"-I{ROOT}", f"-I{well_known}", f"--python_out={out}",
                f"--pyi_out={out}", f"--grpc_python_out={out}", str(ROOT / proto)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")
    files = sorted(p for p in out.rglob("*") if p.suffix in (".py", ".pyi") and p.name != "__init__.py")
    for path in files:
        path.write_text(_relative_imports(path.read_text()))
    for folder in [out, *(d for d in out.rglob("*") if d.is_dir() and d.name != "__pycache__")]:
        (folder / "__init__.py").write_text(HEADER)
    return sorted(out.rglob("*.py*"))


def _relative_imports(text: str) -> str:
    # `from adder.v1 import adder_pb2 as x` -> `from . import adder_pb2 as x` (sibling module).
    return re.sub(r"^from (adder\.v1|inference) import (\w+_pb2)", r"from . import \2", text, flags=re.M)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
