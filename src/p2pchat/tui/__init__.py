"""The full-screen terminal client, built with Textual on top of the client library."""

from .app import ChatApp

__all__ = ["ChatApp"]
