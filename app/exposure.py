"""Who the studio agrees to serve.

The studio listens on 127.0.0.1 unless told otherwise. Listening on any other address, or making a public
``--share`` link, exposes every project and the machine's GPU to whoever reaches it, so it needs
credentials (``--auth USER:PASS`` or ``$CONTINUITY_AUTH``) or the studio refuses to start. These checks import
nothing heavy, so a refusal comes at once, before the page's libraries load.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from projects.errors import StudioError

AUTH_ENV = "CONTINUITY_AUTH"
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Exposure:
    host: str
    share: bool
    auth: tuple[str, str] | None

    @property
    def local_only(self) -> bool:
        return not self.share and is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise StudioError("--auth must be USER:PASS with a non-empty user name and password")
    if len(password) < 8:
        raise StudioError("the --auth password must be at least 8 characters long")
    return user, password


def check_exposure(host: str, *, auth: str | None, share: bool) -> Exposure:
    """Refuse to listen beyond this machine without credentials; say why and what to do."""
    credentials = parse_auth(auth if auth is not None else os.environ.get(AUTH_ENV))
    exposure = Exposure(host=host, share=share, auth=credentials)
    if not exposure.local_only and credentials is None:
        where = "a public --share link" if share else f"address {host}"
        raise StudioError(
            f"refusing to serve on {where} without credentials: anyone who reaches it could read and delete "
            f"your projects. Add --auth USER:PASS (or set {AUTH_ENV}=USER:PASS), or listen on 127.0.0.1."
        )
    return exposure
