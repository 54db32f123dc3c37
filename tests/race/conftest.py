"""The race tests: spawned processes on one ledger, each test over both backends.

They pick their backends themselves (``backend`` below), so the ``--backend=postgres`` pass
leaves them out (the ``own_backend`` mark): each race runs once per backend per CI run. The
PostgreSQL variants skip when PostgreSQL is not installed, and fail instead when ``CI=true``
(the ``pg_url`` fixture); they skip when the PostgreSQL backend is not in the checkout yet."""

import multiprocessing

import pytest

from tests.conftest import pg_backend_present
from tests.race import workers

PARTIES = (2, 4, 8)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture
def target(backend, tmp_path, request) -> str:
    """The shared ledger: a SQLite file, or a fresh PostgreSQL database (a URL)."""
    if backend == "sqlite":
        return str(tmp_path / "ledger.db")
    if not pg_backend_present():
        pytest.skip("the PostgreSQL backend (usagebill/ledger/postgres.py) is not in this checkout")
    return request.getfixturevalue("pg_url")


class Race:
    """A pool of 8 spawned processes for the session (spawning one costs ~1 s of CPU, so they
    are reused; every task opens its own Billing). ``run`` sends one task per process and
    returns their results in order; a task that raised fails the test with its traceback."""

    def __init__(self):
        self.ctx = multiprocessing.get_context("spawn")
        self.pool = None

    def run(self, calls, timeout: float = 300):
        """``calls``: (function of tests.race.workers, args) pairs, 2, 4 or 8 of them, each
        taking the party count (``len(calls)``) as its third argument."""
        assert len(calls) in PARTIES
        if self.pool is None:
            barriers = {n: self.ctx.Barrier(n) for n in PARTIES}
            self.pool = self.ctx.Pool(max(PARTIES), initializer=workers.init, initargs=(barriers,))
        pending = [self.pool.apply_async(workers.guarded, (fn, *args)) for fn, args in calls]
        try:
            results = [p.get(timeout) for p in pending]
        except BaseException:
            self.close()
            raise
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            self.close()  # its barriers are broken: the next test gets a new pool
            # the root cause first: the others may only say that the barrier broke
            errors.sort(key=lambda e: "BrokenBarrierError" in e)
            pytest.fail(f"{len(errors)} of {len(calls)} processes failed; the first:\n{errors[0]}", pytrace=False)
        return [r["ok"] for r in results]

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


@pytest.fixture(scope="session")
def race():
    r = Race()
    yield r
    r.close()
