"""Which proxy each request goes through: the one function the client, the token requests and doctor share.

An explicit proxy (``--proxy`` / ``CALLJOURNEY_PROXY``) wins over the environment's ``HTTPS_PROXY`` (for
``https://`` targets) and ``HTTP_PROXY`` (for ``http://`` ones), read as Python's ``urllib`` and aiohttp's
``trust_env`` read them (lower case first); ``NO_PROXY`` sends the hosts it names direct, whichever proxy
was chosen, with the standard library's matching (``example.com`` covers its subdomains, ``*`` every host).
The proxy hop is plain http (an ``https://`` target goes through it in a CONNECT tunnel, TLS verified end to
end with the platform), so the plain-http rule of :func:`reconcile.config._settings.check_url` is for targets only.

Credentials in a proxy URL are split off (sent as ``Proxy-Authorization``), registered for redaction, and
never part of :attr:`Route.shown`, the form every message uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # public, missing from typeshed

from ._redact import MASK, register


@dataclass(frozen=True, slots=True)
class Route:
    """A proxy a request goes through."""

    url: str  # scheme://host:port, without credentials
    source: str  # where it was configured, for messages: "--proxy (CALLJOURNEY_PROXY)", "HTTPS_PROXY", ...
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def authenticated_url(self) -> str:
        """The URL with its credentials, for the HTTP client only (it sends them as ``Proxy-Authorization``)."""
        if not self.username:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{quote(self.username, safe='')}:{quote(self.password, safe='')}@{rest}"

    @property
    def shown(self) -> str:
        """The proxy as messages show it: the user name kept (it helps), the password never."""
        if not self.username:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{self.username}:{MASK}@{rest}" if self.password else f"{scheme}://{self.username}@{rest}"


@dataclass(frozen=True, slots=True)
class Proxies:
    """The proxy configuration of a run: explicit, from the environment, and the hosts that bypass both."""

    explicit: str = ""
    https: str = ""
    http: str = ""
    no_proxy: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], explicit: str = "") -> Proxies:
        """Read ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` (lower-case names first) from ``environ``."""

        def read(name: str) -> str:
            return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()

        proxies = cls(explicit.strip(), read("https_proxy"), read("http_proxy"), read("no_proxy"))
        for url in (proxies.explicit, proxies.https, proxies.http):
            password = _parse(url)[2] if url else ""
            if password:
                register(password)
        return proxies

    def __repr__(self) -> str:
        shown = {
            name: _route(value, name).shown
            for name, value in (("explicit", self.explicit), ("https", self.https), ("http", self.http))
            if value
        }
        return f"Proxies({shown}, no_proxy={self.no_proxy!r})"

    def route(self, url: str) -> Route | None:
        """The proxy a request to ``url`` goes through, or None to connect direct."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        where = f"{host}:{parts.port}" if parts.port else host
        if self.no_proxy and proxy_bypass_environment(where, {"no": self.no_proxy}):
            return None
        if self.explicit:
            return _route(self.explicit, "--proxy (CALLJOURNEY_PROXY)")
        chosen, name = (self.https, "HTTPS_PROXY") if parts.scheme == "https" else (self.http, "HTTP_PROXY")
        return _route(chosen, name) if chosen else None

    def describe(self, url: str) -> str:
        """``via PROXY (from SOURCE)`` or ``direct``, for doctor and the run's metadata."""
        route = self.route(url)
        return f"via {route.shown} (from {route.source})" if route else "direct"

    def problems(self) -> list[str]:
        """Why a configured proxy URL cannot be used (each with the fix)."""
        found = []
        for value, name in ((self.explicit, "--proxy"), (self.https, "HTTPS_PROXY"), (self.http, "HTTP_PROXY")):
            if not value:
                continue
            scheme, host = _parse(value)[0], urlsplit(_with_scheme(value)).hostname
            shown = _route(value, name).shown
            if scheme != "http" or not host:
                found.append(
                    f"{name} {shown!r} is not an http:// proxy URL. HINT: write http://host:port (an https:// "
                    "platform is reached through it in a CONNECT tunnel, TLS verified end to end; https:// and "
                    "SOCKS proxies are not supported)"
                )
        return found


def _with_scheme(url: str) -> str:
    # curl, pip and requests read "proxy.corp:3128" as http://proxy.corp:3128
    return url if "://" in url else "http://" + url


def _parse(url: str) -> tuple[str, str, str, str]:
    """scheme, user, password and the URL without credentials."""
    parts = urlsplit(_with_scheme(url))
    netloc = parts.netloc.rpartition("@")[2]
    bare = f"{parts.scheme}://{netloc}"
    return parts.scheme, unquote(parts.username or ""), unquote(parts.password or ""), bare


def _route(url: str, source: str) -> Route:
    _, user, password, bare = _parse(url)
    return Route(bare, source, user, password)
