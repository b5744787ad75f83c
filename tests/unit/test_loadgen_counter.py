"""The benchmarks' delivery counter (benchmarks/loadgen.py) counts each mark once,
however the stream is cut into chunks: the comparison's figures rest on it."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

LOADGEN = Path(__file__).resolve().parents[2] / "benchmarks" / "loadgen.py"
MARKS = [b"BROADCAST:", b"UPDATE:JOIN:"]
LINES = [b"BROADCAST:a:hello\r\n", b"UPDATE:JOIN:x:1.2.3.4:5\r\n", b"LIST:a:1.2.3.4:5\r\n"]


def _loadgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loadgen", LOADGEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loadgen = _loadgen()


@given(
    lines=st.lists(st.sampled_from(LINES), max_size=200),
    seed=st.integers(0, 2**32 - 1),
    most=st.integers(1, 40),
)
def test_each_mark_is_counted_once_across_chunk_boundaries(
    lines: list[bytes], seed: int, most: int
) -> None:
    stream = b"".join(lines)
    counter = loadgen.Counter(MARKS, None)
    rng = random.Random(seed)
    at = 0
    while at < len(stream):
        step = rng.randint(1, most)
        counter.data_received(stream[at : at + step])
        at += step
    assert counter.counts == [stream.count(mark) for mark in MARKS]
