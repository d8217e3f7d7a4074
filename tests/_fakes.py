"""The one loopback fake HTTP server of the test suite (127.0.0.1, an OS-chosen port).

A test writes a ``Handler``: a function of a :class:`Request` returning a :class:`Reply`, and
serves it with the ``serve`` fixture of ``tests/conftest.py`` (``serve(handler)`` -> a running
:class:`FakeServer`, closed after the test). The server keeps every request it got, in order, in
``FakeServer.requests``; ``Request.base`` is the server's own ``scheme://host:port`` for
absolute links. Provider fakes (tests/providers) reproduce a real API's documented quirks with
it; connector tests (tests/connectors) script odd pages, statuses and redirects with it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FakeServer", "Handler", "Reply", "Request"]


@dataclass
class Request:
    """One request as the fake saw it (query and POST form decoded, last value of a key wins)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    base: str  # scheme://host:port of the fake, for absolute links
    form: dict[str, str] = field(default_factory=dict)  # a POST's urlencoded body
    body: bytes = b""  # a POST's raw body (a JSON payload, say)


@dataclass
class Reply:
    """What the fake answers: a dict/list body is sent as JSON, str/bytes as given."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes as given
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""  # defaults to application/json for a dict/list body


Handler = Callable[[Request], Reply]


class FakeServer:
    """Serve ``handler`` on 127.0.0.1 (an OS-chosen port); keep every request in ``requests``.

    A handler that raises answers 500 with the exception in the body, so a broken fake fails
    the test loudly instead of hanging up the connection.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                form = raw.decode("utf-8", "replace")
                self.do_GET(
                    method="POST", form=dict(parse_qsl(form, keep_blank_values=True)), body=raw
                )

            def do_GET(
                self, method: str = "GET", form: dict[str, str] | None = None, body: bytes = b""
            ) -> None:
                parts = urlsplit(self.path)
                req = Request(
                    method,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    dict(self.headers.items()),
                    outer.url,
                    form or {},
                    body,
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
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
