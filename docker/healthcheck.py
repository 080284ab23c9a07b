"""Container health check: exit 0 when each named grpc.health.v1 service reports SERVING.

Usage: healthcheck.py [SERVICE ...]   (no argument: "", the server's overall readiness:
every model loaded, its sha256 checked and all 10,000 sums right; "liveness" is the process alone).
Talks to the server's own gRPC port (ADDER_GRPC_PORT) with the stock grpcio-health-checking
stubs, which the runtime image has anyway: no extra binary such as grpc_health_probe.
"""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 3.0
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}  # listening everywhere: ask over loopback


def target() -> str:
    host = os.environ.get("ADDER_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"{host}:{os.environ.get('ADDER_GRPC_PORT', '8001')}"


def check(services: list[str]) -> int:
    with grpc.insecure_channel(target()) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            request = health_pb2.HealthCheckRequest(service=service)
            try:
                status = stub.Check(request, timeout=TIMEOUT_SECONDS).status
            except grpc.RpcError as error:
                print(f"health {service!r}: {error.code().name}", file=sys.stderr)
                return 1
            if status != health_pb2.HealthCheckResponse.SERVING:
                print(f"health {service!r}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}",
                      file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1:] or [""]))
