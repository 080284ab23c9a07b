"""The soak (`python -m bench.soak`) for a few seconds with a few clients: no error, every answer a+b,
and the server's resident memory grows by less than 10% after warm-up. No time is asserted."""

import os

from bench.endtoend import ClientPool
from bench.soak import MAX_RSS_GROWTH, main, report, rss_bytes, soak
from contract import MODELS
from service.process import ServerProcess


def test_a_short_soak_has_no_errors_right_answers_and_flat_memory(measured_repository, tmp_path):
    with ServerProcess(measured_repository, tmp_path / "server.log", max_batch_size=64, intra_op_threads=1) as server:
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


def test_rss_follows_memory_the_process_touches():
    """rss_bytes reads kB and returns bytes: 64 MiB made resident shows as 64 MiB more (a wrong unit, a
    wrong field such as VmSize, or another process's figure would not)."""
    before = rss_bytes(os.getpid())
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page: resident, not just reserved
    grown = rss_bytes(os.getpid()) - before
    assert 56 * 1024 * 1024 < grown < 80 * 1024 * 1024, grown
    del block


def test_an_unservable_repository_is_exit_code_2(tmp_path, capsys):
    assert main(["--repository", str(tmp_path / "absent"), "--seconds", "1", "--log", str(tmp_path / "s.log")]) == 2
    assert "server exited with code 1" in capsys.readouterr().err
