"""The server's counters, and the address of ``--metrics``: what the server needs of its
metrics without loading aiohttp or prometheus_client.

The counters are plain integers, bumped where each thing happens.

The server's hot path pays one attribute increment per event (per message
read, per batch written, never per delivery); nothing here locks, allocates
or reads a clock. ``p2pchat.metrics`` reads these counters when it is
scraped and turns them into Prometheus metrics.

Nothing here does I/O.
"""

from __future__ import annotations

from . import _net

# Why the server ends a connection on its own initiative: the label values of
# p2pchat_drops_total, one counter each below.
DROP_REASONS = {
    "slow_reader": "owed more than its send queue (--sendq-bytes)",
    "register_timeout": "no REGISTER within --register-timeout",
    "protocol_error": "a message that cannot be framed (ERROR, then closed)",
    "server_full": "a newcomer refused: --max-clients reached, all registered",
    "evicted_unregistered": "the oldest unregistered connection closed to make room",
}


class ServerStats:
    """Counters since the server started; each only ever grows."""

    __slots__ = (
        "batch_pauses",
        "bytes_out",
        "connections",
        "drop_evicted_unregistered",
        "drop_protocol_error",
        "drop_register_timeout",
        "drop_server_full",
        "drop_slow_reader",
        "errors_sent",
        "flood_pauses",
        "in_bad",
        "in_broadcast",
        "in_list",
        "in_register",
        "joins",
        "leaves",
        "messages_out",
    )

    def __init__(self) -> None:
        self.connections = 0  # accepted, whatever became of them
        # Messages read, by kind; ``in_bad`` counts those that could not be decoded.
        self.in_register = 0
        self.in_broadcast = 0
        self.in_list = 0
        self.in_bad = 0
        # Messages and bytes handed to client sockets: a broadcast to N readers is N.
        self.messages_out = 0
        self.bytes_out = 0
        self.errors_sent = 0
        self.joins = 0  # local participants welcomed
        self.leaves = 0  # local participants gone, for any reason
        self.flood_pauses = 0  # reading stopped until a client earned tokens again
        self.batch_pauses = 0  # reading stopped until the batch owed to readers was written
        self.drop_slow_reader = 0
        self.drop_register_timeout = 0
        self.drop_protocol_error = 0
        self.drop_server_full = 0
        self.drop_evicted_unregistered = 0

    def drops(self) -> dict[str, int]:
        """The drops so far, by reason (the keys of ``DROP_REASONS``)."""
        return {reason: getattr(self, "drop_" + reason) for reason in DROP_REASONS}


def parse_metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError with the reason.

    Both parts are required: where metrics are served is never guessed.
    """
    host, port = _net.parse_host_port(text, -1)
    if not host:
        raise ValueError(f"{text!r}: no host; give HOST:PORT, e.g. 127.0.0.1:9100")
    if port < 0:
        raise ValueError(f"{text!r}: no port; give HOST:PORT, e.g. 127.0.0.1:9100")
    return host, port
