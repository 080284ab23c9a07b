"""`python -m service` and the `sparse-adder-server` console script: parse the config, serve until SIGTERM.

With more than one worker (ADDER_WORKERS) this process supervises that many server processes; it then
imports only what a supervisor needs (no onnxruntime, no gRPC server): its memory is the pod's too.
"""

import sys

from service.config import parse_args
from service.cpus import available_cpus
from service.worker_link import is_worker


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    workers = config.workers or available_cpus()
    if workers > 1 and not is_worker():
        from service import logs
        from service.supervisor import Supervisor

        logs.configure(config.log_level)
        return Supervisor(config, workers).run()
    from service.server import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
