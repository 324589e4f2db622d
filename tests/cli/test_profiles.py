"""Configuration profiles: the search path, precedence flag > environment > .env > profile > top level > default,
secrets refused, typos refused, and the CLI's --config/--profile."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.cli._profiles import Profile, config_path, load_profile, search_path
from reconcile.config._settings import DEFAULT_AUTHORITY, DEFAULT_BASE_URL, DEFAULT_ENDPOINT_PATH, Settings
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Dataset
from reconcile.errors import ConfigError
from tests.conftest import read_results, write_manifest

LAYERS = ("flag", "environment", "dotenv", "profile", "top")
BASE = {"tenant_id": "t", "client_id": "c"}  # given as flags when the field under test is another one


class Inline(str):
    """A TOML inline table, written as is."""

    __slots__ = ()


def toml_value(value: Any) -> str:
    if isinstance(value, Inline):
        return str(value)
    return json.dumps(value) if not isinstance(value, Path) else json.dumps(str(value))


def write_config(path: Path, top: dict[str, Any], profiles: dict[str, dict[str, Any]]) -> Path:
    """A TOML file: ``top`` keys, then a [profile.NAME] table per profile (values as TOML literals)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, values in profiles.items():
        lines.append(f"[profile.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def values_for(field: str, tmp_path: Path) -> tuple[dict[str, Any], Any, Callable[[Settings], Any]]:
    """One distinct value per layer for ``field``, the built-in default, and how to read it from Settings."""
    text = {
        "base_url": ("https://{}.example.com", DEFAULT_BASE_URL),
        "authority": ("https://login-{}.example.com", DEFAULT_AUTHORITY),
        "tenant_id": ("tenant-{}", None),
        "client_id": ("client-{}", None),
        "scope": ("api://scope-{}/.default", "api://c/.default"),
        "endpoint_path": ("/api/{}/exists", DEFAULT_ENDPOINT_PATH),
    }
    numbers: dict[str, tuple[list[Any], Any]] = {
        "concurrency": ([11, 12, 13, 14, 15], None),  # None: automatic
        "max_concurrency": ([21, 22, 23, 24, 25], 256),
        "outage_tolerance": ([61.0, 62.0, 63.0, 64.0, 65.0], 180.0),
        "timeout": ([1.5, 2.5, 3.5, 4.5, 5.5], 30.0),
        "max_attempts": ([7, 8, 9, 10, 11], 5),
        "max_retry_time": ([10.0, 20.0, 30.0, 40.0, 50.0], 120.0),
        "max_rps": ([1.0, 2.0, 3.0, 4.0, 5.0], None),
    }
    if field in text:
        pattern, default = text[field]
        return {layer: pattern.format(layer) for layer in LAYERS}, default, lambda s: getattr(s, field)
    if field in numbers:
        given, default = numbers[field]
        return dict(zip(LAYERS, given, strict=True)), default, lambda s: getattr(s, field)
    bundles = {}
    for layer in LAYERS:
        bundles[layer] = tmp_path / f"ca-{layer}.pem"
        bundles[layer].write_text("not read by Settings.load\n", encoding="utf-8")
    return bundles, None, lambda s: s.ca_bundle


FIELDS = (
    "base_url",
    "authority",
    "tenant_id",
    "client_id",
    "scope",
    "endpoint_path",
    "concurrency",
    "max_concurrency",
    "outage_tolerance",
    "timeout",
    "max_attempts",
    "max_retry_time",
    "max_rps",
    "ca_bundle",
)
COMBOS = list(itertools.product((False, True), repeat=len(LAYERS)))


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("present", COMBOS, ids=lambda c: "".join("FEDPT"[i] if on else "-" for i, on in enumerate(c)))
def test_precedence_is_flag_environment_dotenv_profile_top_default(
    field: str, present: tuple[bool, ...], tmp_path: Path
) -> None:
    """For every field and every combination of layers that set it, the highest layer present wins."""
    values, default, read = values_for(field, tmp_path)
    on = dict(zip(LAYERS, present, strict=True))
    env_name = "CALLJOURNEY_" + field.upper()
    overrides = {k: v for k, v in BASE.items() if k != field}
    if on["flag"]:
        overrides[field] = values["flag"]
    environ = {"CALLJOURNEY_CLIENT_SECRET": "s"}
    if on["environment"]:
        environ[env_name] = str(values["environment"])
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"{env_name}={values['dotenv']}\n" if on["dotenv"] else "", encoding="utf-8")
    top = {field: values["top"]} if on["top"] else {}
    profile_values = {field: values["profile"]} if on["profile"] else {}
    config = write_config(tmp_path / "reconcile.toml", top, {"p": profile_values, "other": {field: values["flag"]}})
    profile = load_profile(config, "p", environ=environ, dotenv=dotenv)
    winner = next((layer for layer in LAYERS if on[layer]), None)
    if winner is None and default is None and field in ("tenant_id", "client_id"):
        with pytest.raises(ConfigError, match=f"CALLJOURNEY_{field.upper()} is not set"):
            Settings.load(overrides, environ=environ, dotenv=dotenv, defaults=profile.settings)
        return
    settings = Settings.load(overrides, environ=environ, dotenv=dotenv, defaults=profile.settings)
    expected = values[winner] if winner is not None else default
    if field == "ca_bundle" and winner is not None:
        expected = Path(expected)
    assert read(settings) == expected


@pytest.mark.parametrize("present", list(itertools.product((False, True), repeat=4)))
def test_secret_precedence_flag_file_environment_file_environment_profile_file(
    present: tuple[bool, ...], tmp_path: Path
) -> None:
    """The secret: --client-secret-file > $CALLJOURNEY_CLIENT_SECRET_FILE > $CALLJOURNEY_CLIENT_SECRET > the
    profile's client_secret_file; none of them: refused."""
    flag, env_file, env_secret, profile_file = present
    files = {}
    for name in ("flag", "env-file", "profile"):
        files[name] = tmp_path / f"{name}.secret"
        files[name].write_text(f"secret-from-{name}\n", encoding="utf-8")
    environ = {"CALLJOURNEY_TENANT_ID": "t", "CALLJOURNEY_CLIENT_ID": "c"}
    if env_file:
        environ["CALLJOURNEY_CLIENT_SECRET_FILE"] = str(files["env-file"])
    if env_secret:
        environ["CALLJOURNEY_CLIENT_SECRET"] = "secret-from-env"
    config = write_config(
        tmp_path / "r.toml", {}, {"p": {"client_secret_file": "profile.secret"} if profile_file else {}}
    )
    profile = load_profile(config, "p", environ=environ, dotenv=None)

    def load() -> Settings:
        return Settings.load(
            {},
            environ=environ,
            dotenv=None,
            defaults=profile.settings,
            client_secret_file=files["flag"] if flag else None,
        )

    expected = next(
        (value for on, value in zip(present, ("flag", "env-file", "env", "profile"), strict=True) if on), None
    )
    if expected is None:
        with pytest.raises(ConfigError, match="CLIENT_SECRET is not set"):
            load()
    else:
        assert load().client_secret.reveal() == f"secret-from-{expected}"


def test_profile_tables_override_the_top_level_field_by_field(tmp_path: Path) -> None:
    """Where each of the four values comes from: the profile's choice for a field replaces the top level's for that
    field only; a --map flag then replaces the profile's for its field only; other options are replaced whole."""
    config = write_config(
        tmp_path / "r.toml",
        {
            "map": Inline('{ company = "Tenant", folder = "Day" }'),
            "constants": Inline('{ organisation = "ops" }'),
            "encoding": "latin-1",
        },
        {"p": {"constants": Inline('{ company = "acme" }'), "filename_template": "{Sid}.mp3", "delimiter": ";"}},
    )
    profile = load_profile(config, "p", environ={}, dotenv=None)
    read = profile.read_options()
    assert dict(read.columns) == {"folder": "Day"}  # company now comes from the profile's constant
    assert dict(read.constants) == {"organisation": "ops", "company": "acme"}
    assert (read.filename_template, read.encoding, read.delimiter) == ("{Sid}.mp3", "latin-1", ";")
    flagged = profile.read_options(columns=(("company", "Customer"), ("filename", "File")), encoding="utf-16")
    assert dict(flagged.columns) == {"folder": "Day", "company": "Customer", "filename": "File"}
    assert dict(flagged.constants) == {"organisation": "ops"}
    assert (flagged.filename_template, flagged.encoding, flagged.delimiter) == (None, "utf-16", ";")
    assert Profile().read_options().encoding == "utf-8-sig"


def test_formats_and_label_come_from_the_profile(tmp_path: Path) -> None:
    """Output formats (list or comma text) and the label are read; the profile's beat the top level's."""
    config = write_config(
        tmp_path / "r.toml",
        {"formats": ["csv", "xlsx"], "label": "shared"},
        {"p": {"label": "Canada"}, "q": {"formats": "parquet, json"}},
    )
    p, q = (load_profile(config, name, environ={}, dotenv=None) for name in ("p", "q"))
    assert (p.formats, p.label) == (("csv", "xlsx"), "Canada")
    assert (q.formats, q.label) == (("parquet", "json"), "shared")
    top = load_profile(config, None, environ={}, dotenv=None)
    assert (top.name, top.formats, top.label) == (None, ("csv", "xlsx"), "shared")


def test_metrics_options_come_from_the_profile_and_flags_win(tmp_path: Path) -> None:
    """metrics_file (relative to the file), pushgateway, metrics_job and metrics_labels are read; the profile's name
    is a label; a flag's file, gateway, job and labels win over the profile's, label by label."""
    config = write_config(
        tmp_path / "r.toml",
        {"metrics_job": "reconcile-nightly"},
        {
            "ca": {
                "metrics_file": "textfile/reconcile.prom",
                "pushgateway": "https://pushgateway.example:9091",
                "metrics_labels": Inline('{ region = "ca", team = "audit" }'),
            }
        },
    )
    profile = load_profile(config, "ca", environ={}, dotenv=None)
    metrics = profile.metrics_options()
    assert metrics.file == tmp_path / "textfile" / "reconcile.prom"
    assert (metrics.pushgateway, metrics.job) == ("https://pushgateway.example:9091", "reconcile-nightly")
    assert dict(metrics.labels) == {"profile": "ca", "region": "ca", "team": "audit"}
    flagged = profile.metrics_options(
        file=tmp_path / "other.prom", pushgateway="https://gw.example", job="adhoc", labels=(("team", "ops"),)
    )
    assert (flagged.file, flagged.pushgateway, flagged.job) == (tmp_path / "other.prom", "https://gw.example", "adhoc")
    assert dict(flagged.labels) == {"profile": "ca", "region": "ca", "team": "ops"}
    assert not Profile().metrics_options().enabled


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("top", "client_secret"),
        ("profile", "client_secret"),
        ("profile", "secret"),
        ("top", "password"),
        ("profile", "access_token"),
        ("profile", "api-key"),
        ("top", "CLIENT_SECRET"),
    ],
)
def test_a_secret_in_the_config_file_is_refused(where: str, key: str, tmp_path: Path) -> None:
    """Any key that looks like a secret is an error naming the file and the key, with the HINT, never the value."""
    value = "s3cr3t-value-that-must-not-leak"
    entry = {f'"{key}"' if "-" in key else key: value}
    top, profile = (entry, {}) if where == "top" else ({}, entry)
    config = write_config(tmp_path / "r.toml", top, {"p": profile})
    with pytest.raises(ConfigError) as caught:
        load_profile(config, "p", environ={}, dotenv=None)
    message = str(caught.value)
    assert str(config) in message
    assert key in message
    assert "HINT" in message
    assert "CALLJOURNEY_CLIENT_SECRET" in message
    assert value not in message
    assert caught.value.exit_code == 4


def test_a_secret_in_a_profile_not_used_or_nested_is_refused_too(tmp_path: Path) -> None:
    """Secrets are looked for in every table, selected or not, and inside inline tables."""
    unused = write_config(tmp_path / "a.toml", {}, {"p": {}, "q": {"client_secret": "x"}})
    with pytest.raises(ConfigError, match=r"\[profile\.q\] client_secret"):
        load_profile(unused, "p", environ={}, dotenv=None)
    nested = write_config(tmp_path / "b.toml", {"map": Inline('{ token = "Tok" }')}, {})
    with pytest.raises(ConfigError, match=r"map\.token looks like a secret"):
        load_profile(nested, None, environ={}, dotenv=None)


def test_client_secret_file_is_allowed_and_relative_to_the_config(tmp_path: Path) -> None:
    """client_secret_file names a file, not a secret; relative paths are taken from the config file's directory."""
    (tmp_path / "conf").mkdir()
    config = write_config(tmp_path / "conf" / "r.toml", {"client_secret_file": "secret.txt", "ca_bundle": "ca.pem"}, {})
    profile = load_profile(config, None, environ={}, dotenv=None)
    assert profile.settings["client_secret_file"] == str(tmp_path / "conf" / "secret.txt")
    assert profile.settings["ca_bundle"] == str(tmp_path / "conf" / "ca.pem")


def test_credential_and_network_keys_are_allowed_and_paths_relative_to_the_config(tmp_path: Path) -> None:
    """client_certificate and federated_token_file name files (not secrets); proxy, trust_store, assertion_alg load."""
    (tmp_path / "conf").mkdir()
    values = {
        "client_certificate": "client.pem",
        "federated_token_file": "token",
        "proxy": "http://proxy.corp:3128",
        "trust_store": "system",
        "assertion_alg": "RS256",
    }
    profile = load_profile(write_config(tmp_path / "conf" / "r.toml", values, {}), None, environ={}, dotenv=None)
    assert profile.settings["client_certificate"] == str(tmp_path / "conf" / "client.pem")
    assert profile.settings["federated_token_file"] == str(tmp_path / "conf" / "token")
    assert (profile.settings["proxy"], profile.settings["trust_store"]) == ("http://proxy.corp:3128", "system")


def test_a_proxy_url_with_a_password_in_the_config_file_is_refused(tmp_path: Path) -> None:
    """A config file may not hold the proxy's password: the error says where to put it, and never shows it."""
    config = write_config(tmp_path / "r.toml", {"proxy": "http://alice:hunter2-proxy@proxy.corp:3128"}, {})
    with pytest.raises(ConfigError, match=r"proxy must be a proxy URL without a password") as caught:
        load_profile(config, None, environ={}, dotenv=None)
    assert "CALLJOURNEY_PROXY" in str(caught.value)
    assert "hunter2-proxy" not in str(caught.value)


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    """A typo anywhere (even in a profile not used) names the key, the table and the likely intended key."""
    config = write_config(tmp_path / "r.toml", {"concurency": 4}, {"p": {}, "q": {"max_rpss": 5, "colour": "red"}})
    with pytest.raises(ConfigError) as caught:
        load_profile(config, "p", environ={}, dotenv=None)
    message = str(caught.value)
    assert "unknown key 'concurency' (did you mean 'concurrency'?)" in message
    assert "[profile.q] unknown key 'max_rpss' (did you mean 'max_rps'?)" in message
    assert "'colour'" in message
    assert str(config) in message
    assert "HINT" in message


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"concurrency": "8"}, 'concurrency must be "auto" or a whole number'),
        ({"concurrency": True}, 'concurrency must be "auto" or a whole number'),
        ({"concurrency": "lots"}, 'concurrency must be "auto" or a whole number'),
        ({"max_rps": -1}, "max_rps must be a positive number"),
        ({"timeout": "30"}, "timeout must be a positive number"),
        ({"formats": ["csv", "docx"]}, "formats must be a list of formats among csv"),
        (
            {"map": Inline('{ compnay = "Tenant" }')},
            r"map must be a table whose keys are among company, organisation, folder, filename \(not compnay\)",
        ),
        (
            {"constants": Inline('{ filename = "x" }')},
            r"constants must be a table whose keys are among company, organisation, folder \(not filename\)",
        ),
        ({"input_format": "docx"}, "input_format must be one of"),
        ({"base_url": 443}, "base_url must be a string"),
        ({"metrics_labels": Inline("{ region = 1 }")}, "metrics_labels must be a table of non-empty strings"),
    ],
)
def test_badly_typed_values_are_refused(entry: dict[str, Any], problem: str, tmp_path: Path) -> None:
    """A value of the wrong kind is an error naming the key and what it must be."""
    config = write_config(tmp_path / "r.toml", {}, {"p": entry})
    with pytest.raises(ConfigError, match=r"\[profile\.p\] " + problem):
        load_profile(config, "p", environ={}, dotenv=None)


def test_unknown_profile_missing_file_and_bad_toml_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown profile lists those there are; a profile with no file, a missing file and bad TOML are errors."""
    config = write_config(tmp_path / "r.toml", {}, {"ca": {}, "us": {}})
    with pytest.raises(ConfigError, match=r"no \[profile\.eu\] \(profiles: ca, us\)"):
        load_profile(config, "eu", environ={}, dotenv=None)
    empty_home = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": ""}
    monkeypatch.chdir(tmp_path)  # holds r.toml, but no reconcile.toml
    with pytest.raises(ConfigError, match="no config file was found"):
        load_profile(None, "ca", environ=empty_home, dotenv=None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "nope.toml", None, environ={}, dotenv=None)
    (tmp_path / "bad.toml").write_text("[profile.ca\nbase_url = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_profile(tmp_path / "bad.toml", None, environ={}, dotenv=None)
    assert load_profile(None, None, environ=empty_home, dotenv=None) == Profile()


def test_search_path_and_environment_choose_the_file_and_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config > $CALLJOURNEY_CONFIG > ./reconcile.toml > $XDG_CONFIG_HOME/reconcile/config.toml > ~/.config/...;
    --profile > $CALLJOURNEY_PROFILE (also from .env)."""
    monkeypatch.chdir(tmp_path)
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    (home / ".config" / "reconcile").mkdir(parents=True)
    (xdg / "reconcile").mkdir(parents=True)
    for path, where in (
        (home / ".config" / "reconcile" / "config.toml", "home"),
        (xdg / "reconcile" / "config.toml", "xdg"),
        (tmp_path / "reconcile.toml", "cwd"),
        (tmp_path / "named.toml", "named"),
    ):
        write_config(path, {"label": where}, {"p": {"label": f"{where}-p"}})
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}

    def label(config: Path | None = None, name: str | None = None, **extra: str) -> str | None:
        return load_profile(config, name, environ={**env, **extra}, dotenv=tmp_path / ".env").label

    assert label(tmp_path / "named.toml", CALLJOURNEY_CONFIG=str(xdg / "reconcile" / "config.toml")) == "named"
    assert label(CALLJOURNEY_CONFIG=str(tmp_path / "named.toml")) == "named"
    assert label() == "cwd"
    (tmp_path / "reconcile.toml").unlink()
    assert label() == "xdg"
    assert label(XDG_CONFIG_HOME="") == "home"
    assert search_path({"HOME": str(home), "XDG_CONFIG_HOME": ""})[1] == home / ".config" / "reconcile" / "config.toml"
    assert label(CALLJOURNEY_PROFILE="p") == "xdg-p"
    assert label(None, "p", CALLJOURNEY_PROFILE="nope") == "xdg-p"
    (tmp_path / ".env").write_text("CALLJOURNEY_PROFILE=p\n", encoding="utf-8")
    assert label() == "xdg-p"
    with pytest.raises(ConfigError, match="CALLJOURNEY_CONFIG: the config file"):
        config_path(None, {"CALLJOURNEY_CONFIG": str(tmp_path / "missing.toml")})


@pytest.fixture
def env(emulator_process_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """A clean working directory and environment: only the secret; everything else must come from the profile."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CALLJOURNEY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    write_config(
        tmp_path / "reconcile.toml",
        {"tenant_id": DEMO_TENANT_ID, "client_id": DEMO_CLIENT_ID, "base_url": "https://unreachable.invalid"},
        {
            "emu": {
                "base_url": emulator_process_url,
                "authority": emulator_process_url,
                "formats": ["csv", "json"],
                "label": "from the profile",
                "map": Inline('{ filename = "Recording" }'),
                "concurrency": 3,
            },
        },
    )
    return {"CALLJOURNEY_CLIENT_SECRET": DEMO_CLIENT_SECRET}


def invoke(args: list[str], env: dict[str, str | None]) -> Result:
    result = CliRunner().invoke(cli, args, env=env)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def export(tmp_path: Path) -> Path:
    """A manifest whose filename column is called Recording: readable only with the profile's map."""
    return write_manifest(
        tmp_path / "export.csv", list(Dataset.demo())[:4], header=("company", "organisation", "folder", "Recording")
    )


@pytest.mark.slow
def test_cli_run_takes_everything_but_the_secret_from_the_profile(env: dict[str, str | None], tmp_path: Path) -> None:
    """`run --profile emu` (found as ./reconcile.toml) reaches the emulator, maps the column, writes its formats."""
    result = invoke(["run", str(export(tmp_path)), "--out", "out", "--profile", "emu"], env)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["label"], summary["concurrency"]) == ("from the profile", 3)
    assert (tmp_path / "out" / "results.jsonl").is_file()
    assert [r["status"] for r in read_results(tmp_path / "out" / "results.csv")] == ["present"] * 4


@pytest.mark.slow
def test_cli_flags_and_environment_beat_the_profile(env: dict[str, str | None], tmp_path: Path) -> None:
    """--label, --format and --concurrency beat the profile; CALLJOURNEY_PROFILE selects it."""
    args = ["run", str(export(tmp_path)), "--out", "out", "--label", "flag", "--format", "csv", "--concurrency", "2"]
    result = invoke(args, {**env, "CALLJOURNEY_PROFILE": "emu"})
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["label"], summary["concurrency"]) == ("flag", 2)
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.slow
def test_cli_refuses_a_secret_in_the_config(env: dict[str, str | None], tmp_path: Path) -> None:
    """A config holding client_secret: exit 4, naming the file and key, never the value; nothing is checked."""
    config = write_config(tmp_path / "leaky.toml", {"client_secret": "hunter2-very-secret"}, {})
    result = invoke(["run", str(export(tmp_path)), "--out", "out", "--config", str(config)], env)
    assert result.exit_code == 4
    assert "leaky.toml: client_secret looks like a secret" in result.output
    assert "hunter2-very-secret" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_validate_uses_the_profile_mapping(env: dict[str, str | None], tmp_path: Path) -> None:
    """`validate` reads the manifest with the profile's column mapping; without it the column is missing."""
    manifest = str(export(tmp_path))
    assert invoke(["validate", manifest, "--profile", "emu"], env).exit_code == 0
    without = invoke(["validate", manifest], env)
    assert without.exit_code == 2
    assert "filename" in without.output
