"""``--workers N``: what each worker is started with, and the usage errors (the real
processes: tests/cluster/test_workers.py)."""

from __future__ import annotations

import pytest

from p2pchat.server import build_parser, main
from p2pchat.workers import metrics_address, web_address, worker_argv

URL = "redis://127.0.0.1:6379"


def test_a_worker_gets_the_parents_options_on_the_chosen_port() -> None:
    parser = build_parser()
    given = ["--cluster", URL, "--workers", "3", "--port", "0", "--host", "127.0.0.1"]
    given += ["--verify-ip", "--flood-rate", "0", "--node-timeout", "2.5", "--cluster-name", "x"]
    args = parser.parse_args(given)
    argv = worker_argv(parser, args, 2, 40123)
    assert "--workers" not in argv
    assert argv[:4] == ["--port", "40123", "--worker", "2"]
    # What the worker makes of them is what the parent was given, bar these three.
    child = parser.parse_args(argv)
    for name, value in vars(args).items():
        if name not in ("workers", "worker", "port"):
            assert getattr(child, name) == value, name
    assert (child.workers, child.worker, child.port) == (None, 2, 40123)


def test_worker_i_serves_its_metrics_on_port_plus_i() -> None:
    assert metrics_address(None, 1) is None
    assert metrics_address(("127.0.0.1", 9100), 0) == ("127.0.0.1", 9100)
    assert metrics_address(("127.0.0.1", 9100), 3) == ("127.0.0.1", 9103)
    assert metrics_address(("::1", 0), 3) == ("::1", 0)  # each picks a free one
    parser = build_parser()
    args = parser.parse_args(["--cluster", URL, "--workers", "2", "--metrics", "[::1]:9100"])
    child = parser.parse_args(worker_argv(parser, args, 1, 7777))
    assert child.metrics == ("::1", 9101)


def test_worker_i_serves_the_web_client_on_port_plus_i() -> None:
    # Each worker is a host of its own: two on one port would not start.
    assert web_address(None, 1) is None
    assert web_address("0.0.0.0:8080", 2) == "0.0.0.0:8082"
    assert web_address("[::1]:0", 3) == "[::1]:0"
    parser = build_parser()
    args = parser.parse_args(["--cluster", URL, "--workers", "2", "--web", "127.0.0.1:8080"])
    child = parser.parse_args(worker_argv(parser, args, 1, 7777))
    assert child.web == "127.0.0.1:8081"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--workers", "2"], "--workers needs --cluster URL"),
        (["--cluster", URL, "--workers", "0"], "0 is not a positive number"),
        (
            ["--cluster", URL, "--workers", "3", "--metrics", "127.0.0.1:65534"],
            "--metrics port 65534 leaves no room for 3 workers",
        ),
        (
            ["--cluster", URL, "--workers", "3", "--web", "127.0.0.1:65535"],
            "--web port 65535 leaves no room for 3 workers",
        ),
    ],
)
def test_usage_errors(argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert reason in capsys.readouterr().err
