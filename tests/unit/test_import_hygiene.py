"""What importing a module drags in, checked in a fresh interpreter each time.

The client library must stay importable (and cheap to import) without the
user interfaces and the server, and the protocol codec is sans-IO: no asyncio,
no sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import p2pchat.protocol

# The directory holding the p2pchat package, so the child finds this checkout
# even when the package is not installed.
_SRC = str(Path(p2pchat.protocol.__file__).resolve().parents[2])

_PROBE = """
import json, sys
before = set(sys.modules)
import {module}
watched = {watched!r}
loaded = sorted(
    name for name in sys.modules
    if any(name == w or name.startswith(w + ".") for w in watched)
)
print(json.dumps({{"loaded": loaded, "preloaded": sorted(set(watched) & before)}}))
"""

UIS_AND_SERVER = (
    "textual",
    "p2pchat.cli",
    "p2pchat.linemode",
    "p2pchat.typedlines",
    "readline",
    "p2pchat.server",
)
IO = ("asyncio", "socket", "selectors", "ssl")


def _loaded_by(module: str, watched: tuple[str, ...]) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, watched=watched)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # If the interpreter loaded one of them at start-up, the check would prove nothing.
    assert report["preloaded"] == [], f"loaded before the import: {report['preloaded']}"
    return report["loaded"]


@pytest.mark.parametrize(
    "module",
    [
        "p2pchat",
        "p2pchat.client",
        "p2pchat.direct",
        "p2pchat.events",
        "p2pchat.state",
        "p2pchat.protocol",
    ],
)
def test_library_does_not_load_the_uis_or_the_server(module: str) -> None:
    assert _loaded_by(module, UIS_AND_SERVER) == []


@pytest.mark.parametrize(
    "module", ["p2pchat.protocol", "p2pchat.state", "p2pchat.commands", "p2pchat.textsafe"]
)
def test_pure_modules_load_no_io(module: str) -> None:
    assert _loaded_by(module, IO) == []


def test_the_probe_sees_what_is_loaded() -> None:
    # The probe itself works: the client does use asyncio and sockets.
    assert {"asyncio", "socket"} <= set(_loaded_by("p2pchat.client", IO))
    assert "p2pchat.cli" in _loaded_by("p2pchat.cli", UIS_AND_SERVER)


def test_the_client_module_holds_no_command_line() -> None:
    """The command line lives in p2pchat.cli alone: the library has no entry point of its own."""
    import p2pchat.client

    assert not hasattr(p2pchat.client, "main")
