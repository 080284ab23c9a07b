"""`python -m service` and the `sparse-adder-server` console script: parse the config, serve until SIGTERM."""

import sys

from service.config import parse_args
from service.server import serve


def main(argv: list[str] | None = None) -> int:
    return serve(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
