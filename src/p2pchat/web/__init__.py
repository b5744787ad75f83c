"""The web client: a page served by the chat's host, one ``ChatClient`` per browser
session (``host.py``), and what each page is sent (``view.py``)."""

from .host import WebConfig, WebHost, serve_web

__all__ = ["WebConfig", "WebHost", "serve_web"]
