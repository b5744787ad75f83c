"""The codec's exceptions: misuse by our own code vs garbage from a peer."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the codec raises."""


class LocalProtocolError(ProtocolError):
    """Our caller asked for something the protocol cannot carry (e.g. ':' in a nickname)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid.

    ``str(error)`` is the sentence to send back in an ERROR. ``fatal`` says
    whether the byte stream is lost (the connection must be closed) or the
    decoder already stands at the start of the next message.
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal
