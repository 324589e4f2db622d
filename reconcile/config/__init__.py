"""Configuration: where to connect and how (settings, certificates, proxies), logging, and redaction of secrets."""

from ._certificates import Certificate, load_certificate
from ._logs import LOG_FORMATS, ROW, configure_logging, error_fields, reset_logging, utc_stamp
from ._proxies import Route
from ._redact import Secret, redact, register
from ._settings import DEFAULT_ENDPOINT_PATH, ENV_PREFIX, Settings, check_url, environment, is_loopback

__all__ = [
    "DEFAULT_ENDPOINT_PATH",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "ROW",
    "Certificate",
    "Route",
    "Secret",
    "Settings",
    "check_url",
    "configure_logging",
    "environment",
    "error_fields",
    "is_loopback",
    "load_certificate",
    "redact",
    "register",
    "reset_logging",
    "utc_stamp",
]
