"""Configuration profiles: named sets of settings in a TOML file, e.g. one per platform region.

    # reconcile.toml
    tenant_id = "00000000-0000-0000-0000-000000000000"   # top level: shared by every profile
    client_id = "11111111-1111-1111-1111-111111111111"
    formats = ["csv", "xlsx"]

    [profile.ca]
    base_url = "https://platform-ca.calljourney.com"

    [profile.us]
    base_url = "https://platform-us.calljourney.com"
    max_rps = 50
    map = { company = "Tenant" }

The file is ``--config PATH``, else ``$CALLJOURNEY_CONFIG``, else the first of ``./reconcile.toml`` and
``$XDG_CONFIG_HOME/reconcile/config.toml`` (``~/.config/reconcile/config.toml``) that exists; the profile is
``--profile NAME``, else ``$CALLJOURNEY_PROFILE``, else none (the top-level keys only).  A profile's keys
override the top level's; then the environment and ``.env`` override both, and flags override everything.

A config file gets copied, mailed, committed and mounted as a Kubernetes ConfigMap, so it may not hold a
secret: a key that looks like one is an error, and so is any key this module does not know (a typo must never
be silently ignored); a proxy URL with a password counts as a secret.  Relative paths in the file
(``ca_bundle``, ``client_secret_file``, ``client_certificate``, ``federated_token_file``) are relative to it.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconcile.config import ENV_PREFIX, environment, redact
from reconcile.engine import ReportOptions, format_names
from reconcile.errors import ConfigError
from reconcile.input import FORMATS as INPUT_FORMATS
from reconcile.input import ReadOptions
from reconcile.model import KEY_FIELDS
from reconcile.ops import MetricsOptions
from reconcile.report import FORMATS

CONFIG_NAME = "reconcile.toml"
CONSTANT_FIELDS = KEY_FIELDS[:3]  # a filename is never one constant: --filename-template builds it
# Parts of a key's name that mark it as a secret.  ``client_secret_file`` names a file, which is the safe way.
SECRET_WORDS = ("secret", "password", "passwd", "passphrase", "token", "apikey", "api_key", "private_key", "credential")
NOT_SECRETS = frozenset({"client_secret_file", "federated_token_file"})
SECRET_HINT = (
    f"HINT: set {ENV_PREFIX}CLIENT_SECRET in the environment or in .env, or keep the secret alone in a file "
    "readable only by you and pass --client-secret-file (or set client_secret_file in the profile)"
)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError("a whole number of at least 1")
    return value


def _concurrency(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    try:
        return _integer(value)
    except TypeError:
        raise TypeError('"auto" or a whole number of at least 1') from None


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise TypeError("a positive number")
    return float(value)


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise TypeError(f"one of {', '.join(choices)}")
        return value.lower()

    return check


def _proxy(value: Any) -> str:
    text = _text(value)
    if urlsplit(text if "://" in text else "http://" + text).password:
        raise TypeError(
            "a proxy URL without a password (a config file may not hold secrets: put the URL with its "
            "credentials in CALLJOURNEY_PROXY or HTTPS_PROXY instead)"
        )
    return text


def _table(fields: tuple[str, ...]) -> Callable[[Any], tuple[tuple[str, str], ...]]:
    def check(value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
            raise TypeError(f'a table of non-empty strings, e.g. {{ {fields[0]} = "..." }}')
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise TypeError(f"a table whose keys are among {', '.join(fields)} (not {', '.join(unknown)})")
        return tuple((name, value[name]) for name in fields if name in value)

    return check


def _formats(value: Any) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TypeError('a list of formats, e.g. ["csv", "xlsx"]')
    wanted = tuple(n.strip().lower() for n in names if n.strip())
    if any(n not in FORMATS for n in wanted):
        raise TypeError(f"a list of formats among {', '.join(FORMATS)}")
    return wanted


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise TypeError('a table of non-empty strings, e.g. { region = "ca" }')
    return tuple(sorted(value.items()))


# What a profile may set, and how each value is checked and converted.
SETTING_KEYS: dict[str, Callable[[Any], Any]] = {
    "base_url": _text,
    "authority": _text,
    "tenant_id": _text,
    "client_id": _text,
    "scope": _text,
    "endpoint_path": _text,
    "concurrency": _concurrency,
    "max_concurrency": _integer,
    "outage_tolerance": _positive,
    "max_rps": _positive,
    "timeout": _positive,
    "max_attempts": _integer,
    "max_retry_time": _positive,
    "ca_bundle": _text,
    "trust_store": _choice(("openssl", "system")),
    "proxy": _proxy,
    "client_secret_file": _text,
    "client_certificate": _text,
    "assertion_alg": _choice(("ps256", "rs256")),
    "federated_token_file": _text,
}
READ_KEYS: dict[str, Callable[[Any], Any]] = {
    "map": _table(KEY_FIELDS),
    "constants": _table(CONSTANT_FIELDS),
    "filename_template": _text,
    "input_format": _choice(INPUT_FORMATS),
    "encoding": _text,
    "delimiter": _text,
    "sheet": _text,
}
REPORT_KEYS: dict[str, Callable[[Any], Any]] = {"formats": _formats, "label": _text}
METRICS_KEYS: dict[str, Callable[[Any], Any]] = {
    "metrics_file": _text,
    "pushgateway": _text,
    "metrics_job": _text,
    "metrics_labels": _labels,
}
KEYS = {**SETTING_KEYS, **READ_KEYS, **REPORT_KEYS, **METRICS_KEYS}
PATH_KEYS = ("ca_bundle", "client_secret_file", "client_certificate", "federated_token_file", "metrics_file")


@dataclass(frozen=True, slots=True)
class Profile:
    """The settings a config file gives: a layer below the environment and the flags."""

    name: str | None = None  # the [profile.NAME] used; None for the top level only
    path: Path | None = None  # the file read; None when there is none
    settings: dict[str, Any] = field(default_factory=dict)  # for Settings.load(defaults=...)
    read: dict[str, Any] = field(default_factory=dict)  # manifest-reading options
    formats: tuple[str, ...] | None = None
    label: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # where the run's metrics go (METRICS_KEYS)

    def read_options(
        self,
        *,
        columns: tuple[tuple[str, str], ...] = (),
        constants: tuple[tuple[str, str], ...] = (),
        filename_template: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
        input_format: str | None = None,
        sheet: str | None = None,
        company: str | None = None,
        organisation: str | None = None,
        folder: str | None = None,
    ) -> ReadOptions:
        """The flags' reading options over this profile's; the four fields are taken field by field (see
        :func:`overlay`).  ``company``, ``organisation`` and ``folder`` are constants, as ``--company`` gives."""
        given = {"company": company, "organisation": organisation, "folder": folder}
        constants = (*constants, *((name, value) for name, value in given.items() if value))
        flags = {"map": columns, "constants": constants, "filename_template": filename_template}
        read = overlay(self.read, {k: v for k, v in flags.items() if v})
        return ReadOptions(
            encoding=encoding or read.get("encoding") or "utf-8-sig",
            delimiter=delimiter if delimiter is not None else read.get("delimiter"),
            input_format=input_format or read.get("input_format"),
            sheet=sheet if sheet is not None else read.get("sheet"),
            columns=read.get("map", ()),
            constants=read.get("constants", ()),
            filename_template=read.get("filename_template"),
        )

    def report_options(
        self, *, formats: str | None = None, label: str | None = None, compare_to: Path | None = None
    ) -> ReportOptions:
        """The flags' report options over this profile's: ``--format`` and ``--label`` replace its own."""
        return ReportOptions(
            formats=format_names(formats) if formats is not None else self.formats or ("csv",),
            label=label if label is not None else self.label or "",
            compare_to=compare_to,
        )

    def metrics_options(
        self,
        *,
        file: Path | None = None,
        pushgateway: str | None = None,
        job: str | None = None,
        labels: tuple[tuple[str, str], ...] = (),
    ) -> MetricsOptions:
        """The flags' metrics options over this profile's; labels are merged, a flag's winning, and the
        profile's name is the ``profile`` label of every series."""
        metrics = self.metrics
        merged = dict(metrics.get("metrics_labels", ()))
        if self.name is not None:
            merged.setdefault("profile", self.name)
        merged.update(labels)
        given = metrics.get("metrics_file")
        job = job or metrics.get("metrics_job")
        options = MetricsOptions(
            file=file or (Path(given) if given else None),
            pushgateway=pushgateway or metrics.get("pushgateway"),
            labels=tuple(merged.items()),
        )
        return replace(options, job=job) if job else options


def overlay(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """``upper``'s reading options over ``lower``'s.

    Where each of the four fields comes from (``map``, ``constants``, ``filename_template``) is taken field by
    field: a field ``upper`` says where to read from drops whatever ``lower`` says about that field, and
    ``lower``'s other fields stay.  Every other option is simply replaced.
    """
    given = {name for name, _ in (*upper.get("map", ()), *upper.get("constants", ()))}
    if upper.get("filename_template"):
        given.add("filename")
    merged = {**lower, **upper}
    for key in ("map", "constants"):
        pairs = tuple(p for p in lower.get(key, ()) if p[0] not in given) + tuple(upper.get(key, ()))
        merged[key] = pairs
        if not pairs:
            del merged[key]
    if "filename" in given and not upper.get("filename_template"):
        merged.pop("filename_template", None)
    return merged


def config_path(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: ``explicit`` (which must exist), ``$CALLJOURNEY_CONFIG``, or the search path."""
    env = environment(environ, None) if environ is None else dict(environ)
    given = explicit or (Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG", "").strip() else None)
    if given is not None:
        if not given.is_file():
            origin = "--config" if explicit else f"{ENV_PREFIX}CONFIG"
            raise ConfigError(f"{origin}: the config file {given} does not exist. HINT: check the path")
        return given
    return next((p for p in search_path(env) if p.is_file()), None)


def search_path(environ: Mapping[str, str]) -> list[Path]:
    """Where a config file is looked for when none is named, first match wins."""
    xdg = environ.get("XDG_CONFIG_HOME", "").strip()
    home = environ.get("HOME", "").strip()
    base = Path(xdg) if xdg else (Path(home) / ".config" if home else Path.home() / ".config")
    return [Path(CONFIG_NAME), base / "reconcile" / "config.toml"]


def load_profile(
    config: Path | None = None,
    name: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
) -> Profile:
    """The profile ``name`` (or ``$CALLJOURNEY_PROFILE``) of ``config`` (or the file found); empty if none."""
    env = environment(environ, dotenv)
    name = name or env.get(ENV_PREFIX + "PROFILE", "").strip() or None
    path = config_path(config, env)
    if path is None:
        if name is not None:
            looked = ", ".join(str(p) for p in search_path(env))
            raise ConfigError(
                f"profile {name!r} asked for, but no config file was found (looked for {looked}). "
                f"HINT: pass --config PATH or set {ENV_PREFIX}CONFIG"
            )
        return Profile()
    tables = _parse(path)
    values = dict(tables[""])
    if name is not None:
        if name not in tables or not name:
            known = ", ".join(sorted(t for t in tables if t)) or "none"
            raise ConfigError(
                f"{path}: there is no [profile.{name}] (profiles: {known}). HINT: check the name, or add the table"
            )
        values = overlay(values, tables[name])
    for key in PATH_KEYS:
        if key in values:
            values[key] = str(path.parent / Path(values[key]).expanduser())
    return Profile(
        name=name,
        path=path,
        settings={k: v for k, v in values.items() if k in SETTING_KEYS},
        read={k: v for k, v in values.items() if k in READ_KEYS},
        formats=values.get("formats"),
        label=values.get("label"),
        metrics={k: v for k, v in values.items() if k in METRICS_KEYS},
    )


def _parse(path: Path) -> dict[str, dict[str, Any]]:
    """Every table of the file, checked: ``""`` for the top level, then each profile by name."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. HINT: see https://toml.io for the syntax") from None
    profiles = data.pop("profile", {})
    if not isinstance(profiles, dict) or not all(isinstance(t, dict) for t in profiles.values()):
        raise ConfigError(
            f"{path}: 'profile' must hold tables, one per profile. HINT: write [profile.NAME] above its keys"
        )
    if "" in profiles:
        raise ConfigError(f'{path}: a profile needs a name: [profile.""] has none. HINT: [profile.ca]')
    tables: dict[str, dict[str, Any]] = {"": data, **profiles}
    _refuse_secrets(path, tables)
    problems: list[str] = []
    checked: dict[str, dict[str, Any]] = {}
    for table, values in tables.items():
        where = f"[profile.{table}] " if table else ""
        checked[table] = {}
        for key, value in values.items():
            check = KEYS.get(key)
            if check is None:
                close = difflib.get_close_matches(key, KEYS, n=1)
                problems.append(f"{where}unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                continue
            try:
                checked[table][key] = check(value)
            except TypeError as exc:
                problems.append(f"{where}{key} must be {exc}, got {redact(repr(value))}")
    if problems:
        hint = (
            f"the keys a profile may set are {', '.join(KEYS)}"
            if any("unknown key" in p for p in problems)
            else "correct the values named"
        )
        raise ConfigError(f"{path}: " + "; ".join(problems) + f". HINT: {hint}")
    return checked


def _refuse_secrets(path: Path, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """A key that looks like a secret, anywhere in the file, is an error naming it (never its value)."""
    found: list[str] = []

    def walk(where: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            normalised = key.lower().replace("-", "_")
            if normalised not in NOT_SECRETS and any(word in normalised for word in SECRET_WORDS):
                found.append(f"{where}{key}")
            if isinstance(value, dict):
                walk(f"{where}{key}.", value)

    for table, values in tables.items():
        walk(f"[profile.{table}] " if table else "", values)
    if found:
        raise ConfigError(
            f"{path}: {', '.join(found)} looks like a secret, and a config file may not hold secrets (it gets "
            f"copied, shared and mounted where others can read it). {SECRET_HINT}"
        )
