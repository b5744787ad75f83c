"""What every conformance check shares: verdicts, the registry, and running with a time limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

C = TypeVar("C")


class Verdict(Enum):
    PASS = "pass"
    NONSTRICT = "non-strict"  # an accepted variant: works with a lenient peer, not canonical
    FAIL = "fail"


class Failed(Exception):
    """The implementation broke the rule the check is about."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}; got {got}")
        self.expected = expected
        self.got = got


@dataclass(frozen=True, slots=True)
class Note:
    """What was expected and what came, for a verdict other than pass."""

    expected: str
    got: str


@dataclass(frozen=True, slots=True)
class Check(Generic[C]):
    id: str
    title: str
    decisions: str  # the decisions of docs/PROTOCOL.md (or spec parts) it tests
    run: Callable[[C], Awaitable[None]]
    timeout: float
    slow: bool = False  # run only when asked for: by id, or with --slow


@dataclass(slots=True)
class Result(Generic[C]):
    check: Check[C]
    verdict: Verdict
    notes: list[Note] = field(default_factory=list)
    seconds: float = 0.0


class Registry(Generic[C]):
    """The checks of one kind (server or client), in the order they run."""

    def __init__(self) -> None:
        self.checks: list[Check[C]] = []

    def __call__(
        self, id: str, title: str, decisions: str, *, timeout: float = 10.0, slow: bool = False
    ) -> Callable[[Callable[[C], Awaitable[None]]], Callable[[C], Awaitable[None]]]:
        def register(run: Callable[[C], Awaitable[None]]) -> Callable[[C], Awaitable[None]]:
            if any(c.id == id for c in self.checks):
                raise ValueError(f"two checks named {id}")
            self.checks.append(Check(id, title, decisions, run, timeout, slow))
            return run

        return register

    def select(self, only: Sequence[str], slow: bool = False) -> list[Check[C]]:
        """The checks named: an exact id, or else a prefix before '-' (slow checks only
        with ``slow``); every check if none is named (again the slow ones only with ``slow``)."""
        ids = {c.id for c in self.checks}
        unknown = [o for o in only if o not in ids and not self._prefixed(o)]
        if unknown:
            raise KeyError(", ".join(unknown))
        return [
            c
            for c in self.checks
            if (not only and (slow or not c.slow))
            or c.id in only
            or any(o not in ids and c.id.startswith(o + "-") and (slow or not c.slow) for o in only)
        ]

    def _prefixed(self, prefix: str) -> bool:
        return any(c.id.startswith(prefix + "-") for c in self.checks)


class Recorder:
    """Collects the accepted variants a check saw on its way to the end."""

    def __init__(self) -> None:
        self.variants: list[Note] = []

    def variant(self, expected: str, got: str) -> None:
        if Note(expected, got) not in self.variants:
            self.variants.append(Note(expected, got))


async def run_check(check: Check[C], make_context: Callable[[Recorder], C]) -> Result[C]:
    """Runs one check within its time limit; never raises for what the peer did."""
    recorder = Recorder()
    started = time.monotonic()
    context = make_context(recorder)
    limit = asyncio.timeout(check.timeout)
    try:
        async with limit:
            await check.run(context)
    except Failed as failure:
        result = Result(check, Verdict.FAIL, [Note(failure.expected, failure.got)])
    except TimeoutError:
        if limit.expired():
            note = Note(
                f"the check to finish within {check.timeout:g} s", "no end (something hung)"
            )
        else:
            note = Note("an answer", "none in time (the peer stopped answering or reading)")
        result = Result(check, Verdict.FAIL, [note])
    except (OSError, EOFError) as error:
        result = Result(check, Verdict.FAIL, [Note("a working connection", describe(error))])
    except Exception as error:  # a checker bug must not cost the rest of the run
        note = Note("the check to run to its end", f"an error in the checker: {describe(error)}")
        result = Result(check, Verdict.FAIL, [note])
    else:
        verdict = Verdict.NONSTRICT if recorder.variants else Verdict.PASS
        result = Result(check, verdict, list(recorder.variants))
    finally:
        closing = getattr(context, "aclose", None)
        if closing is not None:
            await closing()
    result.seconds = time.monotonic() - started
    return result


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
