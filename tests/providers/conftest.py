"""Loopback fakes of real provider APIs, built on :mod:`http.server` (127.0.0.1, OS port).

Each provider test module writes a small ``Handler`` (a function of the request) that
reproduces the provider's documented quirks, serves it with the ``serve`` fixture, and points
the provider's real profile (``mappings/<provider>/profile.toml``) at it through the profile's
``base_url_env`` variable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MAPPINGS = ROOT / "mappings"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    base: str  # scheme://host:port of the fake, for absolute links
    form: dict[str, str] = field(default_factory=dict)  # a POST's urlencoded body


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes as given
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""


Handler = Callable[[Request], Reply]


class FakeServer:
    """Serve ``handler`` on 127.0.0.1; keep every request in ``requests``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode("utf-8", "replace")
                self.do_GET(method="POST", form=dict(parse_qsl(form, keep_blank_values=True)))

            def do_GET(self, method: str = "GET", form: dict[str, str] | None = None) -> None:
                parts = urlsplit(self.path)
                req = Request(
                    method,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    dict(self.headers.items()),
                    outer.url,
                    form or {},
                )
                outer.requests.append(req)
                try:
                    reply = outer.handler(req)
                except Exception as exc:  # a broken fake must fail the test loudly
                    reply = Reply(500, {"error": f"fake crashed: {exc!r}"})
                body, ctype = reply.body, reply.content_type
                if isinstance(body, dict | list):
                    raw, ctype = json.dumps(body).encode(), ctype or "application/json"
                elif isinstance(body, str):
                    raw = body.encode()
                else:
                    raw = body or b""
                self.send_response(reply.status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], FakeServer]]:
    """Factory: ``serve(handler)`` -> a running FakeServer, closed after the test."""
    servers: list[FakeServer] = []

    def make(handler: Handler) -> FakeServer:
        s = FakeServer(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def paginate(items: list[Any], page: int, size: int) -> tuple[list[Any], bool]:
    """Items of 1-based ``page`` and whether a later page exists."""
    lo = (page - 1) * size
    return items[lo : lo + size], lo + size < len(items)
