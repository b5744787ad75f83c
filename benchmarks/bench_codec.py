"""Codec micro-benchmark: messages encoded and decoded per second, on seeded inputs.

    python benchmarks/bench_codec.py [--messages 200000]

Decoding feeds the stream in 64 KiB chunks, as a socket would. Each figure is
the best of five rounds (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from p2pchat.protocol import (
    NEED_DATA,
    Broadcast,
    Chat,
    Decoder,
    Participant,
    ParticipantList,
    Register,
    Role,
)


def best_of(rounds: int, work: Callable[[], int]) -> float:
    """Items per second of the fastest round."""
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        items = work()
        best = max(best, items / (time.perf_counter() - started))
    return best


def texts(rng: random.Random, count: int) -> list[str]:
    words = ["hello", "world", "ünïcödé", "😀", "a:b", "line\nbreak", "chat", "p2p"]
    return [" ".join(rng.choices(words, k=rng.randint(3, 20))) for _ in range(count)]


def decode_all(role: Role, stream: bytes) -> int:
    decoder = Decoder(role)
    count = 0
    for at in range(0, len(stream), 65536):
        decoder.feed(stream[at : at + 65536])
        while decoder.next_event() is not NEED_DATA:
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    n = args.messages
    corpus = texts(rng, n)
    broadcasts = [Broadcast(f"user{i % 97}", t) for i, t in enumerate(corpus)]
    chats = [Chat(t) for t in corpus]
    people = tuple(
        Participant(f"user{i}", f"10.0.{i // 250}.{i % 250 + 1}", 1024 + i) for i in range(1000)
    )
    registers = [Register(p) for p in people]

    bcast_stream = b"".join(b.encode() for b in broadcasts)
    chat_stream = b"".join(c.encode() for c in chats)
    reg_stream = b"".join(r.encode() for r in registers) * (n // len(registers))
    rows = [
        ("encode BROADCAST", best_of(5, lambda: sum(1 for b in broadcasts if b.encode()))),
        (
            "decode BROADCAST (server side)",
            best_of(5, lambda: decode_all(Role.SERVER, bcast_stream)),
        ),
        (
            "decode BROADCAST (client side)",
            best_of(5, lambda: decode_all(Role.CLIENT, bcast_stream)),
        ),
        ("encode CHAT", best_of(5, lambda: sum(1 for c in chats if c.encode()))),
        ("decode CHAT", best_of(5, lambda: decode_all(Role.PEER, chat_stream))),
        ("decode REGISTER", best_of(5, lambda: decode_all(Role.SERVER, reg_stream))),
        (
            "encode LIST of 1000",
            best_of(5, lambda: sum(1 for _ in range(200) if ParticipantList(people).encode())),
        ),
    ]
    print(f"{'operation':34} {'per second':>14}")
    for name, rate in rows:
        print(f"{name:34} {rate:>14,.0f}")


if __name__ == "__main__":
    main()
