"""The library's exceptions: one base class, and a subclass for each kind of failure.

Everything ``ChatClient`` raises for a reason the user should see is a
``ChatError``; its text is a sentence that says what went wrong.
"""

from __future__ import annotations

__all__ = [
    "ChatError",
    "ConnectError",
    "DirectChatError",
    "InvalidInputError",
    "NotConnectedError",
    "RegistrationError",
]


class ChatError(Exception):
    """Base class of every failure the client library reports."""


class ConnectError(ChatError):
    """The server could not be reached, or did not answer as a server should."""


class RegistrationError(ChatError):
    """The server refused our REGISTER; the text is its ERROR."""


class NotConnectedError(ChatError):
    """The server connection is down (a reconnect may be under way)."""


class DirectChatError(ChatError):
    """A direct chat could not be opened or used."""


class InvalidInputError(ChatError, ValueError):
    """A nickname, text or address the protocol cannot carry, e.g. a message over the limit."""
