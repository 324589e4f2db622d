"""Redaction: secrets never leave the process as text.

Secrets are registered as they come into being (:class:`Secret` on creation, each token and
client assertion as it is made, a certificate's private key and a proxy's password as they are read);
:func:`redact` replaces them, and anything shaped like a bearer token, a JWT, a ``client_secret=`` or
``client_assertion=`` form field or a password in a URL, in text that came from outside (a server's error
body) or goes outside (a log line, an exception, a report's detail).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus

MASK = "[REDACTED]"
_known: set[str] = set()
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_SECRET_FIELD = re.compile(r"(?i)((?:client_secret|client_assertion)=)[^&\s\"']+")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+@")


def register(value: str) -> None:
    """Never show ``value``, nor its URL-encoded forms (a form body echoed back carries those)."""
    if len(value) >= 4:  # a shorter "secret" would mask innocent text everywhere
        _known.update({value, quote(value, safe=""), quote_plus(value)})


def _mask_url_password(found: re.Match[str]) -> str:
    if found.group(0).endswith("://USER:PASSWORD@"):
        return found.group(0)  # the placeholder of a hint ("http://USER:PASSWORD@host:port"), not a password
    return found.group(1) + MASK + "@"


def redact(text: str) -> str:
    """``text`` with every registered secret and anything token-shaped replaced by [REDACTED]."""
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    text = _SECRET_FIELD.sub(r"\1" + MASK, text)
    text = _URL_PASSWORD.sub(_mask_url_password, text)
    text = _BEARER.sub(r"\1" + MASK, text)
    return _JWT.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and drops args so nothing is re-formatted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class Secret:
    """A string that does not show itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        """The secret itself; call only where it is sent to the identity provider."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__
