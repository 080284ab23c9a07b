"""`python -m bench.peers`: the same as `make bench-peers` (see bench/peers/cli.py for the options)."""

import sys

from bench.peers.cli import main

if __name__ == "__main__":
    sys.exit(main())
