"""A short hostile soak (benchmarks/soak.py) in CI: honest clients beside every kind of
attacker for a few seconds. benchmarks/README.md has the 10-minute run and the reasons
for its rates and its memory bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


@pytest.mark.timeout(60)
def test_honest_clients_beside_attackers_lose_nothing_and_the_server_stays_in_its_bound(
    tmp_path: Path,
) -> None:
    """Issue 10: six honest clients, each reading at 2 MiB/s, chat at 50 broadcasts a
    second while a burster sends 40 x 64 KiB in one write every 3 s, two stallers and a
    LIST flooder never read, and garbage and churn come and go. Every honest client must
    get every broadcast (the burster's too), no ERROR, no drop; the server's peak RSS
    must stay within the bound its limits allow."""
    figures = tmp_path / "soak.json"
    command = [
        sys.executable,
        str(SOAK),
        "--clients=6",
        "--duration=6",
        "--bursters=1",
        "--burst-interval=3",
        "--stallers=2",
        "--list-flooders=1",
        "--garbage=1",
        "--churners=1",
        "--register-timeout=1",
        "--drain-quiet=3",
        "--sample=1",
        f"--json={figures}",
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=50, check=False
    )
    report = run.stdout + run.stderr[-3000:]
    assert figures.exists(), report
    soak = json.loads(figures.read_text())
    attack = soak["attack"]

    # The attack took place: bursts reached the honest clients, the non-readers were
    # registered, garbage was sent and connections churned.
    assert attack["bursts"] >= 2, report
    assert soak["burst_deliveries"] > 0, report
    assert attack["stallers"] >= 2 and attack["list_flooders"] >= 1, report
    assert attack["list_requests"] > 0, report
    assert attack["garbage_connections"] >= 3, report
    assert attack["churn_abandoned"] >= 10 and attack["churn_idle"] >= 1, report

    # What the server owes the attackers: every non-reader is owed megabytes and is
    # dropped; garbage gets ERROR and a close; idle connections time out with ERROR.
    assert attack["stallers_dropped"] >= 1 and attack["list_flooders_dropped"] >= 1, report
    assert attack["garbage_answered"] == attack["garbage_connections"], report
    assert attack["churn_idle_closed_with_error"] == attack["churn_idle"], report

    # What the honest clients are owed: everything, once, and no drop.
    assert soak["lost"] == 0 and soak["cut_off"] == 0, report
    assert soak["duplicates"] == 0 and soak["misattributed"] == 0, report
    assert soak["errors"] == [] and soak["protocol_errors"] == [], report
    assert soak["honest_dropped"] == 0, report
    assert soak["delivered"] == soak["deliveries_expected"], report
    assert soak["within_bound"], report
    assert soak["server_alive"], report
    assert run.returncode == 0, report
