"""The soak (`python -m bench.soak`) by count with a few clients: every call answered, no error, every
answer a+b, and the server's resident memory about flat after warm-up. No time is asserted: both phases
run a fixed number of calls, so the work checked is the same on any machine."""

import os

from bench.endtoend import ClientPool
from bench.soak import main, report, rss_bytes, soak
from contract import MODELS
from fixtures.fakes import HANG_S
from service.process import ServerProcess

CLIENTS, WARMUP_CALLS, CALLS = 8, 100, 400  # per client
# A leak shows as growth on any machine; bench.soak's own 10% suits its long runs, and in a short one the
# scheduling of the calls over the server's threads moves RSS by a few percent. Only a leak exceeds this.
RSS_GROWTH_BOUND = 0.5


def test_a_short_soak_has_no_errors_right_answers_and_flat_memory(measured_repository, tmp_path):
    with ServerProcess(measured_repository, tmp_path / "server.log", max_batch_size=64, intra_op_threads=1) as server:
        pool = ClientPool(2)
        try:
            result = soak(server.target, server.pid, pool, list(MODELS), clients=CLIENTS, seconds=0,
                          warmup_seconds=0, timeout_s=HANG_S, calls_per_client=CALLS,
                          warmup_calls_per_client=WARMUP_CALLS)
        finally:
            pool.close()
    print(report(result, list(MODELS)))
    assert (result.errors, result.warmup_errors, result.wrong) == (0, 0, 0), result.first_error
    assert (result.calls, result.warmup_calls) == (CLIENTS * CALLS, CLIENTS * WARMUP_CALLS)
    assert result.problems(max_rss_growth=RSS_GROWTH_BOUND) == []


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
