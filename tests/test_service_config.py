"""Configuration: defaults, ADDER_* environment variables, then flags, checked once at start-up."""

from pathlib import Path

import pytest

from service.config import Config, parse_args


def test_defaults_match_the_documented_ports_and_threads():
    config = parse_args([], environ={})
    assert config == Config()
    assert (config.model_repository, config.host, config.grpc_port, config.metrics_port) == \
        (Path("model_repository"), "127.0.0.1", 8001, 8002)
    assert config.intra_op_threads == 1


def test_environment_overrides_defaults_and_flags_override_environment():
    environ = {"ADDER_MODEL_REPOSITORY": "/models", "ADDER_HOST": "0.0.0.0", "ADDER_GRPC_PORT": "9001",
               "ADDER_METRICS_PORT": "9002", "ADDER_MAX_BATCH_SIZE": "16", "ADDER_MAX_QUEUE_DELAY_US": "250",
               "ADDER_INTRA_OP_THREADS": "2", "ADDER_GRACE_SECONDS": "20", "ADDER_MAX_REQUEST_BATCH": "100"}
    config = parse_args(["--grpc-port", "7001", "--max-batch-size", "1"], environ=environ)
    assert config == Config(model_repository=Path("/models"), host="0.0.0.0", grpc_port=7001, metrics_port=9002,
                            max_batch_size=1, max_queue_delay_us=250, intra_op_threads=2, grace_seconds=20.0,
                            max_request_batch=100)


@pytest.mark.parametrize("argv, environ, message", [
    ([], {"ADDER_GRPC_PORT": "eight"}, "ADDER_GRPC_PORT='eight' is not a valid int"),
    (["--max-batch-size", "0"], {}, "max_batch_size must be >= 1, got 0"),
    ([], {"ADDER_INTRA_OP_THREADS": "0"}, "intra_op_threads must be >= 1, got 0"),
    (["--queue-delay-policy", "never"], {}, "queue_delay_policy must be one of adaptive, always, got 'never'"),
])
def test_invalid_values_stop_start_up_with_a_clear_message(argv, environ, message):
    with pytest.raises(SystemExit, match=message):
        parse_args(argv, environ=environ)
