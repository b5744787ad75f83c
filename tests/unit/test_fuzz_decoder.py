"""A short, bounded run of the decoder's fuzz target (fuzz/fuzz_decoder.py); fuzz/README.md
has the longer one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (wheels: Linux x86_64 only)")

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


@pytest.mark.timeout(60)
def test_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    # libFuzzer adds new inputs to the first corpus directory, and writes crash
    # files under -artifact_prefix: both go to tmp_path, never into the work tree.
    new_inputs = tmp_path / "corpus"
    new_inputs.mkdir()
    command = [
        sys.executable,
        str(FUZZ / "fuzz_decoder.py"),
        "-runs=30000",
        "-max_total_time=10",  # a bound on a slow machine, whichever comes first
        f"-dict={FUZZ / 'decoder.dict'}",
        f"-artifact_prefix={tmp_path}/",
        str(new_inputs),
        str(FUZZ / "corpus" / "decoder"),
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=50,
        check=False,
    )
    report = result.stderr[-4000:]
    assert result.returncode == 0, report
    assert "Done " in result.stderr, report
    assert not list(tmp_path.glob("crash-*")), report
