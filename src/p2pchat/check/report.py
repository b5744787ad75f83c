"""The checker's output: a table for people, JUnit XML for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from ..textsafe import printable
from ._core import Check, Result, Verdict

C = TypeVar("C")  # the context a check runs in: server or client; the report does not need it

_LABEL = {Verdict.PASS: "PASS", Verdict.NONSTRICT: "NON-STRICT", Verdict.FAIL: "FAIL"}


def list_checks(checks: Sequence[Check[C]], out: TextIO) -> None:
    width = max(len(c.id) for c in checks)
    for c in checks:
        slow = ", slow" if c.slow else ""
        out.write(f"{c.id:<{width}}  {c.title} (decision {c.decisions}{slow})\n")


def line(result: Result[C], width: int) -> str:
    c = result.check
    text = f"{_LABEL[result.verdict]:<10}  {c.id:<{width}}  {c.title} (decision {c.decisions})"
    for note in result.notes:
        text += f"\n{'':<10}  {'':<{width}}  expected: {printable(note.expected)}"
        text += f"\n{'':<10}  {'':<{width}}  got:      {printable(note.got)}"
    return text


def summary(results: Sequence[Result[C]]) -> str:
    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    return (
        f"{len(results)} checks: {counts[Verdict.PASS]} passed, "
        f"{counts[Verdict.NONSTRICT]} non-strict, {counts[Verdict.FAIL]} failed"
    )


def write_junit(path: Path, suite: str, results: Sequence[Result[C]]) -> None:
    """One testcase per check; a failure carries what was expected and what came."""
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(r.verdict is Verdict.FAIL for r in results)),
        errors="0",
        skipped="0",
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            root, "testcase", classname=suite, name=r.check.id, time=f"{r.seconds:.3f}"
        )
        details = "\n".join(f"expected: {n.expected}\ngot: {n.got}" for n in r.notes)
        if r.verdict is Verdict.FAIL:
            failure = ET.SubElement(case, "failure", message=r.notes[0].expected, type="fail")
            failure.text = details
        elif r.verdict is Verdict.NONSTRICT:
            ET.SubElement(case, "system-out").text = "non-strict: an accepted variant\n" + details
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
