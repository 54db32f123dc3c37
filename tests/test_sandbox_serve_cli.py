"""`usagebill sandbox serve` over a real socket, shared by separate processes."""

import json
import os
import signal
import subprocess
import sys

import pytest


def test_serve_is_shared_by_other_processes(config_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"}
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT then prints every thread's stack (see below)
    server = subprocess.Popen(
        [sys.executable, "-m", "usagebill", "--config", str(config_path), "sandbox", "serve", "--port", "0",
         "--state", str(tmp_path / "shared.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # Ctrl-C-able, as a server started at a terminal is (a shell's background job, which
        # this test process may be, passes SIGINT on ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client_env = {**env, "USAGEBILL_SANDBOX_URL": url}

        def run(*args, db):
            return subprocess.run(
                [sys.executable, "-m", "usagebill", "--config", str(config_path), "--db", str(tmp_path / db), *args],
                capture_output=True, text=True, env=client_env, timeout=60,
            )

        first = run("sync", "--json", db="one.db")
        assert first.returncode == 0, first.stderr
        assert f"sandbox at {url}" in first.stderr
        assert len(json.loads(first.stdout)["actions"]) == 17
        # a second process with its own ledger sees the same Stripe: everything is found again
        second = run("sync", "--json", db="two.db")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["actions"] == []
        assert (tmp_path / "shared.db").exists()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # it did not stop (seen once in CI, not reproduced): say where each thread was
            server.send_signal(signal.SIGABRT)
            _, err = server.communicate(timeout=20)
            pytest.fail(f"sandbox serve did not stop within 20 s of SIGINT; its threads:\n{err}")
    assert server.returncode == 0, server.stderr.read()
