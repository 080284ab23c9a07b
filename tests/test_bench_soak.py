"""The soak (`python -m bench.soak`) for a few seconds with a few clients: no error, every answer a+b,
and the server's resident memory grows by less than 10% after warm-up. No time is asserted."""

import os
from pathlib import Path

import pytest

from bench.endtoend import ClientPool
from bench.server_process import ServerProcess
from bench.soak import MAX_RSS_GROWTH, main, report, rss_bytes, soak
from contract import MODEL_FILE, MODELS, model_dir
from fixtures.service_repository import build_repository


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """The exported models when ADDER_MODEL_REPOSITORY has them (make test), else the fixture adders."""
    real = Path(os.environ.get("ADDER_MODEL_REPOSITORY", "/nonexistent"))
    if all((model_dir(real, m) / MODEL_FILE).is_file() for m in MODELS):
        return real
    return build_repository(tmp_path_factory.mktemp("repository"))


def test_a_short_soak_has_no_errors_right_answers_and_flat_memory(repository, tmp_path):
    with ServerProcess(repository, tmp_path / "server.log", max_batch_size=64, intra_op_threads=1) as server:
        pool = ClientPool(2)
        try:
            result = soak(server.target, server.pid, pool, list(MODELS), clients=8, seconds=4, warmup_seconds=2)
        finally:
            pool.close()
    print(report(result, list(MODELS)))
    assert result.calls > 0 and result.warmup_calls > 0
    assert (result.errors, result.warmup_errors, result.wrong) == (0, 0, 0), result.first_error
    assert result.rss_growth < MAX_RSS_GROWTH, report(result, list(MODELS))
    assert result.problems() == []


def test_rss_is_read_from_proc():
    assert rss_bytes(os.getpid()) > 1024 * 1024


def test_an_unservable_repository_is_exit_code_2(tmp_path, capsys):
    assert main(["--repository", str(tmp_path / "absent"), "--seconds", "1", "--log", str(tmp_path / "s.log")]) == 2
    assert "server exited with code 1" in capsys.readouterr().err
