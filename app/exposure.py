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
HOSTS_ENV = "CONTINUITY_ALLOWED_HOSTS"
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Exposure:
    host: str
    share: bool
    auth: tuple[str, str] | None
    extra_hosts: tuple[str, ...] = ()  # names the page also answers to (--allow-host, $CONTINUITY_ALLOWED_HOSTS)

    @property
    def local_only(self) -> bool:
        return not self.share and is_loopback(self.host)

    @property
    def allowed_hosts(self) -> frozenset[str] | None:
        """The ``Host`` names the page answers to; None for any.

        A page on this machine without credentials answers only to its loopback names: any other name reaching
        it is a web page in the user's own browser that rebound its DNS name to 127.0.0.1 to drive the studio.
        Behind credentials (a wider address, a share link) the login stands guard, unless names are given.
        """
        if not self.extra_hosts and not (self.local_only and self.auth is None):
            return None
        names = set(LOCAL_NAMES) | {name.lower() for name in self.extra_hosts}
        if not self.share and self.host not in ("0.0.0.0", "::"):
            names.add(self.host.lower())
        return frozenset(names)


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


def parse_hosts(values: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Host names from ``--allow-host`` (repeatable) or ``$CONTINUITY_ALLOWED_HOSTS`` (comma-separated)."""
    given = list(values or []) or os.environ.get(HOSTS_ENV, "").split(",")
    names = []
    for value in given:
        name = value.strip().lower()
        if not name:
            continue
        if not all(c.isalnum() or c in ".-:[]" for c in name):
            raise StudioError(f"--allow-host {value!r} is not a host name; give a name such as studio.lan")
        names.append(name.strip("[]"))
    return tuple(names)


def check_exposure(
    host: str, *, auth: str | None, share: bool, allow_hosts: list[str] | tuple[str, ...] | None = None
) -> Exposure:
    """Refuse to listen beyond this machine without credentials; say why and what to do."""
    credentials = parse_auth(auth if auth is not None else os.environ.get(AUTH_ENV))
    exposure = Exposure(host=host, share=share, auth=credentials, extra_hosts=parse_hosts(allow_hosts))
    if not exposure.local_only and credentials is None:
        where = "a public --share link" if share else f"address {host}"
        raise StudioError(
            f"refusing to serve on {where} without credentials: anyone who reaches it could read and delete "
            f"your projects. Add --auth USER:PASS (or set {AUTH_ENV}=USER:PASS), or listen on 127.0.0.1."
        )
    return exposure
