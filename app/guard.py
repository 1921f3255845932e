"""What the page's web server refuses before Gradio sees a request.

- A ``Host`` the studio does not answer to (:attr:`app.exposure.Exposure.allowed_hosts`): a page on this machine
  without credentials is reachable by any web page the user opens, once that page's DNS name is rebound to
  127.0.0.1, unless the server checks which name it was asked for.
- A stored file served as a page: whatever a file route answers goes out with ``nosniff``, and anything that a
  browser would run (HTML, SVG, XML, JavaScript) is sent as a download in a sandbox, never shown from the studio's
  own origin. The studio stores only pictures and videos; this holds even if something else got into the store.
- The description of every endpoint in the page's HTML: Gradio writes it into the page it serves before login,
  so a login page told whoever reached it what the studio can do and with which values. It is removed from the
  HTML; the page asks ``/info`` for it, which requires the login.

A plain ASGI middleware, passed to Gradio's FastAPI app when the page starts, innermost: it sees bodies before
compression.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.DOTALL)
MAX_PAGE_BYTES = 8 << 20  # an HTML page larger than this is passed through untouched


def host_name(value: str) -> str:
    """The name in a ``Host`` header, without its port: ``[::1]:7860`` is ``::1``, ``Studio:80`` is ``studio``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class PageGuard:
    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            await _refuse(scope, send, host)
            return
        if scope["type"] == "http" and "/file=" in scope.get("path", ""):
            await self.app(scope, receive, _as_media(send))
            return
        if scope["type"] == "http" and scope.get("method") == "GET":
            await self.app(scope, receive, _without_api_info(send))
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, host: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = (
        f"This studio does not answer to the name {host or '(none)'!r}. Open it at 127.0.0.1 or localhost, or start "
        "it with --allow-host NAME for a name of your own.\n"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


ACTIVE_TYPES = (b"text/html", b"image/svg", b"application/xhtml", b"text/xml", b"application/xml", b"text/javascript")


def _as_media(send: Send) -> Send:
    """A ``send`` for a file route: never sniffed, and never a page."""

    async def guarded(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"x-content-type-options"]
            headers.append((b"x-content-type-options", b"nosniff"))
            content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"").lower()
            if content_type.startswith(ACTIVE_TYPES):
                headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
                headers += [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-disposition", b"attachment"),
                    (b"content-security-policy", b"sandbox"),
                ]
            message = {**message, "headers": headers}
        await send(message)

    return guarded


def _without_api_info(send: Send) -> Send:
    """A ``send`` that holds back an HTML page until it is whole, and removes the endpoint description from it."""
    start: Message | None = None
    chunks: list[bytes] = []
    size = 0

    async def guarded(message: Message) -> None:
        nonlocal start, size
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers") or []).get(b"content-type", b"")
            if content_type.startswith(b"text/html"):
                start = message
                return
            await send(message)
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if message.get("more_body", False) and size <= MAX_PAGE_BYTES:
            return
        body = b"".join(chunks)
        if not message.get("more_body", False):
            body = API_INFO.sub(b"", body)
        headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
        if not message.get("more_body", False):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": message.get("more_body", False)})
        start = None

    return guarded
