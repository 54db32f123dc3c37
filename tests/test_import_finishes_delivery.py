"""An import killed while delivering, run again, imports nothing new and delivers what the
first run left pending: nothing stays pending, and Stripe's meters hold every unit once."""

import json
from datetime import datetime, timezone

from tests.test_cli_stripe import J
from usagebill.gateway.meter_sender import MeterEventSender



def test_a_rerun_delivers_what_a_killed_import_left_pending(runner, tmp_path, monkeypatch):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    for user in ("alice", "bob"):
        J(runner("customers", "add", user, "--test-clock", clock, "--json"))
        J(runner("subscribe", user, "Pro", "--json"))
    J(runner("testclock", "advance", clock, "--to", "2026-01-20T00:00:00Z", "--json"))
    rows = "".join(f"{u},api_calls,{n % 7 + 1},2026-01-1{n % 9}T10:00:00Z,r-{n}\n"
                   for n in range(450) for u in ("alice", "bob"))
    usage = tmp_path / "usage.csv"
    usage.write_text("user_id,key,amount,timestamp,id\n" + rows)
    real, calls = MeterEventSender.stream, []

    def dying(self, events):
        calls.append(1)
        if len(calls) == 3:  # two stream requests of 100 went through; then the kill
            raise KeyboardInterrupt
        return real(self, events)

    monkeypatch.setattr(MeterEventSender, "stream", dying)
    assert runner("import", str(usage)).exit_code == 130
    assert 0 < J(runner("status", "--json"))["pending"] < 900
    monkeypatch.setattr(MeterEventSender, "stream", real)
    r = runner("import", str(usage), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert (data["imported"], data["duplicates"]) == (0, 900)
    assert data["push"]["still_pending"] == 0 and data["push"]["delivered"] > 0
    assert J(runner("status", "--json"))["pending"] == 0
    assert runner("reconcile").exit_code == 0  # Stripe's meters hold each unit once
