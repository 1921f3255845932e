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

It also adds one script at the very start of the page's ``<head>``, before Gradio's own: Gradio's status tracker
runs a ``requestAnimationFrame`` loop for its timer while it is pending and does not stop it when the tracker is
destroyed pending (the page's own "Loading..." tracker is), which keeps an idle page at about 8% of a core. The
script stops a loop the tracker module asks for again from within its own frame once no tracker on the page is
pending (none shows its ``.progress-text``); it does nothing before it has seen a pending tracker, and passes every
other request straight to the browser (after a look at the caller's stack: about 10-25 µs a call).

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
HEAD = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
IDLE_SCRIPT = rb"""<script>
(() => {
  const native = window.requestAnimationFrame;
  if (typeof native !== "function") return;
  const PENDING = '[data-testid="status-tracker"] .progress-text';
  let inTrackerFrame = false;
  let armed = false;
  function idleGuardRaf(callback) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 2; // this function and its caller are enough (V8; other engines give them all)
    const stack = new Error().stack || "";
    Error.stackTraceLimit = limit;
    if (!stack.includes("statustracker")) return native.call(window, callback);
    const frames = stack.split("\n");
    const self = frames.findIndex((line) => line.includes("idleGuardRaf"));
    if (self < 0 || !(frames[self + 1] || "").includes("statustracker")) return native.call(window, callback);
    const pending = document.querySelector(PENDING) !== null;
    armed = armed || pending;
    if (inTrackerFrame && armed && !pending) return 0;
    return native.call(window, (time) => {
      inTrackerFrame = true;
      try {
        callback(time);
      } finally {
        inTrackerFrame = false;
      }
    });
  }
  window.requestAnimationFrame = idleGuardRaf;
})();
</script>"""


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
    """A ``send`` that holds back an HTML page until it is whole, removes the endpoint description from it and
    adds :data:`IDLE_SCRIPT` at the start of its head."""
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
            body = HEAD.sub(lambda head: head.group(0) + IDLE_SCRIPT, API_INFO.sub(b"", body), count=1)
        headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
        if not message.get("more_body", False):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": message.get("more_body", False)})
        start = None

    return guarded
