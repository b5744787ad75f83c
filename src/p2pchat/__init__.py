"""p2pchat: group chat with direct peer-to-peer conversations.

The public API is re-exported here and loaded on first use, so that
``import p2pchat.protocol`` (the sans-IO codec) pulls in no asyncio.

Throughout the package, "decision N" names the N-th of the numbered
decisions in docs/PROTOCOL.md, section 6.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ChatClient": "p2pchat.client",
    "ClientConfig": "p2pchat.core",
    "ClientLimits": "p2pchat.core",
    "ChatError": "p2pchat.errors",
    "ConnectError": "p2pchat.errors",
    "DirectChatError": "p2pchat.errors",
    "InvalidInputError": "p2pchat.errors",
    "NotConnectedError": "p2pchat.errors",
    "RegistrationError": "p2pchat.errors",
    "ChatServer": "p2pchat.server",
    "ServerConfig": "p2pchat.server",
}

__all__ = [
    "ChatClient",
    "ChatError",
    "ChatServer",
    "ClientConfig",
    "ClientLimits",
    "ConnectError",
    "DirectChatError",
    "InvalidInputError",
    "NotConnectedError",
    "RegistrationError",
    "ServerConfig",
    "__version__",
]

if TYPE_CHECKING:
    from .client import ChatClient
    from .core import ClientConfig, ClientLimits
    from .errors import (
        ChatError,
        ConnectError,
        DirectChatError,
        InvalidInputError,
        NotConnectedError,
        RegistrationError,
    )
    from .server import ChatServer, ServerConfig


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pchat' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
