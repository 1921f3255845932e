"""The page answers only to its own names, and says nothing about itself before login: a real server, asked with
a raw HTTP client that sets any Host header a rebound DNS name would send."""

from __future__ import annotations

import asyncio
import http.client
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_ui_client import start_app

from app.exposure import check_exposure
from app.guard import PageGuard, host_name
from projects.errors import StudioError


def get(url: str, host: str | None = None, path: str = "/") -> tuple[int, str]:
    where = urlparse(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_a_page_without_credentials_answers_only_to_loopback_names(tmp_path: Path) -> None:
    process, url = start_app(tmp_path / "data", "--allow-host", "studio.lan")
    port = urlparse(url).port
    try:
        assert get(url, f"127.0.0.1:{port}")[0] == 200
        assert get(url, f"localhost:{port}")[0] == 200
        assert get(url, "studio.lan")[0] == 200  # named by the user
        status, text = get(url, "evil.example")  # a rebound DNS name
        assert status == 400 and "does not answer to the name 'evil.example'" in text
        assert get(url, f"evil.example:{port}", "/gradio_api/info")[0] == 400
        assert get(url, "127.0.0.1.evil.example")[0] == 400
    finally:
        stop(process)


def test_the_login_page_does_not_describe_the_studio(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "app.py", "project", "create", "Secret Harbour", "--data-dir", str(data)],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        capture_output=True,
    )
    process, url = start_app(data, "--auth", "mara:longpassword")
    try:
        status, page = get(url)
        assert status == 200 and '"auth_required":true' in page
        assert "gradio_api_info" not in page and "create_project" not in page and "Secret Harbour" not in page
        assert get(url, path="/gradio_api/info")[0] == 401  # the description needs the login
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:7860", "127.0.0.1"), ("[::1]:7860", "::1"), ("LocalHost", "localhost"), ("::1", "::1"), ("", "")],
)
def test_host_names_are_read_without_their_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_which_names_a_page_answers_to() -> None:
    local = check_exposure("127.0.0.1", auth=None, share=False)
    assert local.allowed_hosts == {"localhost", "127.0.0.1", "::1"}
    assert check_exposure("0.0.0.0", auth="mara:longpassword", share=False).allowed_hosts is None  # behind a login
    named = check_exposure("0.0.0.0", auth="mara:longpassword", share=False, allow_hosts=["Studio.lan"])
    assert named.allowed_hosts == {"localhost", "127.0.0.1", "::1", "studio.lan"}
    with pytest.raises(StudioError, match="not a host name"):
        check_exposure("127.0.0.1", auth=None, share=False, allow_hosts=["a b"])


def test_the_guard_removes_the_description_from_a_page_sent_in_pieces() -> None:
    page = b'<html><script>window.gradio_config = {};</script><script>window.gradio_api_info = {"a": 1};</script>'

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": page[:40], "more_body": True})
        await send({"type": "http.response.body", "body": page[40:]})

    sent: list[dict] = []

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {"type": "http", "method": "GET", "headers": [(b"host", b"localhost:7860")]}
    asyncio.run(PageGuard(app, frozenset({"localhost"}))(scope, None, send))  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent)
    assert body == b"<html><script>window.gradio_config = {};</script>"
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize(
    ("content_type", "served_as"),
    [
        (b"text/html; charset=utf-8", b"application/octet-stream"),
        (b"image/svg+xml", b"application/octet-stream"),
        (b"image/png", b"image/png"),
        (b"video/mp4", b"video/mp4"),
    ],
)
def test_a_stored_file_is_never_served_as_a_page(content_type: bytes, served_as: bytes) -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": b"<svg onload=alert(1)>"})

    sent: list[dict] = []

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/gradio_api/file=/data/media/ab/cd/x", "headers": []}
    asyncio.run(PageGuard(app, None)(scope, None, send))  # type: ignore[arg-type]
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == served_as and headers[b"x-content-type-options"] == b"nosniff"
    if served_as == b"application/octet-stream":
        assert headers[b"content-disposition"] == b"attachment" and headers[b"content-security-policy"] == b"sandbox"
