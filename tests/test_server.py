"""Who the studio agrees to serve: loopback freely, anything wider only with credentials.

No test here starts a server or sends a packet: addresses are only ever strings handed to the checks, and
``open_studio`` inside ``app.server`` is replaced so that a check that wrongly lets a request through fails
the test at once instead of launching Gradio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import app.server as server
from app.cli import main
from app.exposure import AUTH_ENV, Exposure, check_exposure, is_loopback, parse_auth
from projects.errors import StudioError

GOOD_AUTH = "user:longpassword"


class ServerWouldStart(BaseException):
    """Raised by the stand-in for ``open_studio``: the refusal did not happen. Not an ``Exception``, which the
    command line would turn into an error message like any other failure."""


@pytest.fixture(autouse=True)
def _no_auth_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace ``open_studio`` in app.server; record what it was called with and stop there."""
    calls: list[Any] = []

    def refuse_to_open(data_dir: Any = None) -> None:
        calls.append(data_dir)
        raise ServerWouldStart(data_dir)

    monkeypatch.setattr(server, "open_studio", refuse_to_open)
    return calls


# is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "", "LAN-box"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


# parse_auth


def test_parse_auth() -> None:
    assert parse_auth(GOOD_AUTH) == ("user", "longpassword")
    assert parse_auth("user:pass:with:colons") == ("user", "pass:with:colons")
    assert parse_auth("user:12345678") == ("user", "12345678")


@pytest.mark.parametrize("value", [None, ""])
def test_no_auth(value: str | None) -> None:
    assert parse_auth(value) is None


@pytest.mark.parametrize("value", ["nocolon", ":longpassword", "user:", "user:short", "user:1234567"])
def test_malformed_auth_is_refused(value: str) -> None:
    with pytest.raises(StudioError, match="--auth"):
        parse_auth(value)


# check_exposure


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_local_hosts_need_no_credentials(host: str) -> None:
    exposure = check_exposure(host, auth=None, share=False)

    assert exposure.local_only
    assert exposure.auth is None
    assert exposure.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::"])
def test_wider_hosts_without_credentials_are_refused(host: str) -> None:
    with pytest.raises(StudioError) as exc_info:
        check_exposure(host, auth=None, share=False)

    message = str(exc_info.value)
    assert "--auth" in message
    assert host in message
    assert "127.0.0.1" in message, "the message says how to stay local"


def test_share_without_credentials_is_refused() -> None:
    with pytest.raises(StudioError, match="--auth") as exc_info:
        check_exposure("127.0.0.1", auth=None, share=True)

    assert "--share" in str(exc_info.value)


@pytest.mark.parametrize(("host", "share"), [("0.0.0.0", False), ("192.168.1.5", False), ("127.0.0.1", True)])
def test_credentials_open_the_door(host: str, share: bool) -> None:
    exposure = check_exposure(host, auth=GOOD_AUTH, share=share)

    assert exposure.auth == ("user", "longpassword")
    assert not exposure.local_only
    assert exposure.share is share


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_ENV, "env-user:env-password")

    assert check_exposure("0.0.0.0", auth=None, share=False).auth == ("env-user", "env-password")
    assert check_exposure("127.0.0.1", auth=None, share=True).auth == ("env-user", "env-password")


def test_auth_option_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_ENV, "env-user:env-password")

    assert check_exposure("0.0.0.0", auth=GOOD_AUTH, share=False).auth == ("user", "longpassword")


@pytest.mark.parametrize("value", ["nocolon", ":longpassword", "user:", "user:short"])
def test_malformed_credentials_are_refused_even_for_wide_hosts(value: str) -> None:
    with pytest.raises(StudioError, match="--auth"):
        check_exposure("0.0.0.0", auth=value, share=False)


def test_malformed_environment_credentials_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_ENV, "user:short")

    with pytest.raises(StudioError, match="at least 8"):
        check_exposure("0.0.0.0", auth=None, share=False)


# `serve` through the command line, refused before anything opens.


@pytest.mark.parametrize(
    "options",
    [
        ["--host", "0.0.0.0"],
        ["--host", "192.168.1.5"],
        ["--share"],
        ["--host", "0.0.0.0", "--auth", "user:short"],
        ["--host", "0.0.0.0", "--auth", "nocolon"],
    ],
    ids=lambda o: " ".join(o),
)
def test_serve_refuses_before_opening_anything(
    options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: list[Any]
) -> None:
    data_dir = tmp_path / "never-created"

    code = main(["serve", *options, "--data-dir", str(data_dir)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
    assert "--auth" in err
    assert "Traceback" not in err
    assert no_server == [], "the studio was not opened, so no server started"
    assert not data_dir.exists()


def test_serve_refusal_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: list[Any]) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--json", "--data-dir", str(tmp_path / "d")])

    out, err = capsys.readouterr()
    assert code == 1
    error = json.loads(out)["error"]
    assert error["type"] == "StudioError"
    assert "refusing to serve on address 0.0.0.0" in error["message"]
    assert err.startswith("error: refusing")
    assert no_server == []


def test_serve_with_credentials_gets_past_the_check(tmp_path: Path, no_server: list[Any]) -> None:
    data_dir = tmp_path / "d"

    with pytest.raises(ServerWouldStart):
        main(["serve", "--host", "0.0.0.0", "--auth", GOOD_AUTH, "--data-dir", str(data_dir)])

    assert no_server == [str(data_dir)]


def test_serve_with_credentials_from_the_environment_gets_past_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_server: list[Any]
) -> None:
    monkeypatch.setenv(AUTH_ENV, GOOD_AUTH)

    with pytest.raises(ServerWouldStart):
        main(["serve", "--share", "--data-dir", str(tmp_path / "d")])

    assert len(no_server) == 1


def test_no_command_serves_on_localhost_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(data_dir: Any, exposure: Exposure, **options: Any) -> int:
        seen.update(options, data_dir=data_dir, exposure=exposure)
        return 0

    monkeypatch.setattr(server, "serve", fake_serve)

    assert main([]) == 0
    assert seen == {"data_dir": None, "exposure": Exposure("127.0.0.1", share=False, auth=None), "port": 7860}
