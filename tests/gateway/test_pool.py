"""The push's pool of requests in flight (gateway/delivery.py ``_Pool``): never more than its
size at once, every request recorded exactly once on the calling thread, the lease renewed
while it waits, the first error raised after the rest were recorded, and a record that fails
loses none of the others."""

import threading
import time
from contextlib import contextmanager

import pytest

from usagebill.gateway.delivery import _Pool


@contextmanager
def _transaction(**_):
    yield


class _Sends:
    def __init__(self, seconds: float = 0.01):
        self.seconds = seconds
        self.running = self.most = 0
        self.lock = threading.Lock()

    def send(self, n: int, error: BaseException | None = None):
        def run():
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(self.seconds)
            with self.lock:
                self.running -= 1
            return {f"ev{n}": ("delivered", None)}, error
        return run


def test_at_most_size_in_flight_and_each_recorded_once_on_the_calling_thread():
    sends, recorded, threads = _Sends(), [], set()
    pool = _Pool(3, idle=lambda: None, idle_every=1.0, transaction=_transaction)

    def record(verdicts):
        threads.add(threading.get_ident())
        recorded.extend(verdicts)

    for n in range(20):
        pool.collect()
        pool.submit(sends.send(n), record)
    pool.drain()
    pool.close(interrupted=False)
    assert sorted(recorded) == sorted(f"ev{n}" for n in range(20))
    assert sends.most == 3
    assert threads == {threading.get_ident()}


def test_the_lease_is_renewed_while_waiting_for_a_free_thread():
    idles = []
    pool = _Pool(2, idle=lambda: idles.append(1), idle_every=0.02, transaction=_transaction)
    sends = _Sends(seconds=0.2)
    for n in range(3):  # the third waits ~0.2 s for a thread
        pool.submit(sends.send(n), lambda v: None)
    pool.drain()
    pool.close(interrupted=False)
    assert len(idles) >= 3


def test_the_first_error_is_raised_after_every_request_in_flight_was_recorded():
    sends, recorded = _Sends(seconds=0.05), []
    pool = _Pool(4, idle=lambda: None, idle_every=1.0, transaction=_transaction)
    boom = RuntimeError("Stripe is down")
    pool.submit(sends.send(0, boom), recorded.extend)
    for n in range(1, 4):
        pool.submit(sends.send(n), recorded.extend)
    time.sleep(0.1)
    pool.collect()
    assert pool.error is boom
    with pytest.raises(RuntimeError, match="Stripe is down"):
        pool.raise_if_failed()
    assert sorted(recorded) == ["ev0", "ev1", "ev2", "ev3"]  # the verdicts obtained are kept
    pool.close(interrupted=False)


def test_a_record_that_fails_loses_none_of_the_other_finished_requests():
    recorded = []
    pool = _Pool(4, idle=lambda: None, idle_every=1.0, transaction=_transaction)
    sends = _Sends(seconds=0.0)

    def record(verdicts):
        if "ev1" in verdicts and "ev1" not in recorded:
            recorded.append("ev1")
            raise OSError("disk full")
        recorded.extend(verdicts)

    for n in range(4):
        pool.submit(sends.send(n), record)
    time.sleep(0.1)  # all four have ended
    with pytest.raises(OSError):
        pool.collect()
    pool.collect()  # the others are recorded now, none twice
    assert sorted(recorded) == ["ev0", "ev1", "ev2", "ev3"]
    pool.drain()
    pool.close(interrupted=False)
