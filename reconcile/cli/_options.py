"""The command line's options, each declared once, in groups: connection, input reading, run behaviour, report
output, sharding, progress and logging, metrics.

A group is a decorator (``@CONNECTION``) that adds its options to a command, and knows its options' names, so a
command takes a group's values out of its keyword arguments with ``GROUP.take(values)``: adding an option to a
group adds it to every command that uses the group, with no second list to keep in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from reconcile.config import LOG_FORMATS
from reconcile.input import FORMATS as INPUT_FORMATS
from reconcile.report import FORMATS

F = TypeVar("F", bound=Callable[..., Any])

FORCE_HELP = "Write into an --out that holds other files but no reconcile run (only reconcile's own names are written)."


@dataclass(frozen=True)
class Flag:
    """One option: its declarations and attributes, as given to ``click.option``."""

    decls: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The keyword the command receives the value as (click's rule: the explicit name, else the longest flag)."""
        name = click.Option(list(self.decls), **self.attrs).name
        assert name is not None
        return name


def flag(*decls: str, **attrs: Any) -> Flag:
    return Flag(decls, attrs)


class OptionGroup:
    """Options applied together to a command; a group may include other groups."""

    def __init__(self, *members: Flag | OptionGroup) -> None:
        self.flags: tuple[Flag, ...] = tuple(
            f for member in members for f in (member.flags if isinstance(member, OptionGroup) else (member,))
        )
        self.names: tuple[str, ...] = tuple(f.name for f in self.flags)

    def __call__(self, fn: F) -> F:
        for one in reversed(self.flags):  # click adds options bottom-up; this keeps the table's order in --help
            fn = click.option(*one.decls, **one.attrs)(fn)
        return fn

    def take(self, values: dict[str, Any]) -> dict[str, Any]:
        """This group's values, removed from ``values`` (a command's keyword arguments)."""
        return {name: values.pop(name, None) for name in self.names}


class ConcurrencyType(click.ParamType):  # type: ignore[type-arg]
    """``auto`` or a whole number of requests in flight from 1 to 1000."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor a whole number", param, ctx)
        if not 1 <= number <= 1000:
            self.fail(f"{number} is not in the range 1 to 1000", param, ctx)
        return number


class PairType(click.ParamType):  # type: ignore[type-arg]
    """``KEY=VALUE`` as a (key, value) pair: the key stripped (and lower-cased if asked), the value as given."""

    def __init__(self, form: str, example: str, flag_name: str, *, lower: bool = False) -> None:
        self.name = form
        self._example = example
        self._flag = flag_name
        self._lower = lower

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        key, sep, given = str(value).partition("=")
        if not sep or not key.strip() or not given:
            raise click.BadParameter(  # param_hint as the message has always read: "for --map", unquoted
                f"{value!r} is not {self.name}, e.g. {self._example}", ctx, param, param_hint=self._flag
            )
        return (key.strip().lower() if self._lower else key.strip(), given)


CONCURRENCY = ConcurrencyType()
FILE = click.Path(dir_okay=False, path_type=Path)
DIRECTORY = click.Path(file_okay=False, path_type=Path)

PROFILE = OptionGroup(
    flag(
        "--config",
        "config_file",
        type=FILE,
        help="Settings file (TOML) [env CALLJOURNEY_CONFIG; default ./reconcile.toml, then "
        "~/.config/reconcile/config.toml].",
    ),
    flag("--profile", help="Use the config file's [profile.NAME] [env CALLJOURNEY_PROFILE]."),
)

SETTINGS = OptionGroup(
    flag("--base-url", help="Platform base URL [env CALLJOURNEY_BASE_URL; default Production Canada]."),
    flag(
        "--endpoint-path", help="API path [env CALLJOURNEY_ENDPOINT_PATH; default /api/v1/search/conversationexists]."
    ),
    flag(
        "--authority", help="Identity provider [env CALLJOURNEY_AUTHORITY; default https://login.microsoftonline.com]."
    ),
    flag("--tenant-id", help="Azure AD tenant [env CALLJOURNEY_TENANT_ID]."),
    flag("--client-id", help="App registration client id [env CALLJOURNEY_CLIENT_ID]."),
    flag("--scope", help="Token scope [env CALLJOURNEY_SCOPE; default api://{client_id}/.default]."),
    flag(
        "--client-secret-file",
        type=FILE,
        help="Read the client secret from this file (else CALLJOURNEY_CLIENT_SECRET).",
    ),
    flag(
        "--client-certificate",
        type=FILE,
        help="Authenticate with this certificate: PEM with its private key, or PFX (password in "
        "CALLJOURNEY_CLIENT_CERTIFICATE_PASSWORD) [env CALLJOURNEY_CLIENT_CERTIFICATE].",
    ),
    flag(
        "--assertion-alg",
        type=click.Choice(["PS256", "RS256"], case_sensitive=False),
        help="Signature of the certificate's assertion: PS256 with x5t#S256 [default], or RS256 with x5t for "
        "older tenants [env CALLJOURNEY_ASSERTION_ALG].",
    ),
    flag(
        "--federated-token-file",
        type=FILE,
        help="Authenticate with the federated token in this file, re-read for every token (AKS workload identity) "
        "[env CALLJOURNEY_FEDERATED_TOKEN_FILE or AZURE_FEDERATED_TOKEN_FILE].",
    ),
    flag(
        "--proxy",
        metavar="URL",
        help="HTTP proxy for the API and the identity provider, http://[USER:PASSWORD@]host:port "
        "[env CALLJOURNEY_PROXY; default HTTPS_PROXY/HTTP_PROXY; NO_PROXY hosts go direct].",
    ),
    flag("--ca-bundle", type=FILE, help="Also trust this CA (PEM). Verification is always on."),
    flag(
        "--trust-store",
        type=click.Choice(["openssl", "system"], case_sensitive=False),
        help="Certificates to trust: OpenSSL's defaults, honouring SSL_CERT_FILE/SSL_CERT_DIR [default], or the "
        "operating system's store [env CALLJOURNEY_TRUST_STORE].",
    ),
    flag(
        "--concurrency",
        type=CONCURRENCY,
        help="Requests in flight: a number, or auto to find it from the platform's latency [default auto].",
    ),
    flag("--max-concurrency", type=click.IntRange(1, 1000), help="Ceiling of the automatic concurrency [default 256]."),
    flag(
        "--outage-tolerance",
        type=click.FloatRange(min=0),
        help="Seconds the platform may stop answering mid-run before the run stops [default 180].",
    ),
    flag("--timeout", type=click.FloatRange(min=0.1), help="Seconds per attempt [default 30]."),
    flag("--max-attempts", type=click.IntRange(1, 100), help="Attempts per row [default 5]."),
    flag("--max-rps", type=click.FloatRange(min=0.1), help="Hard cap on requests per second."),
)
CONNECTION = OptionGroup(PROFILE, SETTINGS)

READ = OptionGroup(
    flag(
        "--input-format",
        type=click.Choice(INPUT_FORMATS),
        help="Manifest format [default: from the file name; .gz is decompressed].",
    ),
    flag("--encoding", help="Manifest text encoding [default: utf-8-sig]."),
    flag("--delimiter", help="CSV delimiter [default: detected]."),
    flag("--sheet", help="XLSX sheet to read [default: the first]."),
    flag(
        "--map",
        "columns",
        type=PairType("FIELD=COLUMN", "--map filename=RecordingFile", "--map", lower=True),
        multiple=True,
        metavar="FIELD=COLUMN",
        help="Read FIELD (company, organisation, folder, filename) from the export's COLUMN.",
    ),
    flag("--company", help="Use this company for every row."),
    flag("--organisation", help="Use this organisation for every row."),
    flag("--folder", help="Use this folder for every row."),
    flag(
        "--filename-template",
        metavar="TEMPLATE",
        help='Build the filename from export columns, e.g. "{RecordingSid}.mp3".',
    ),
)

RUN = OptionGroup(
    flag("--fresh", is_flag=True, help="Ignore an earlier run's journal in --out and start over."),
    flag("--force", is_flag=True, help=FORCE_HELP),
    flag("--retry-errors", is_flag=True, help="Re-ask only the error rows of a finished run in --out."),
)

REPORT = OptionGroup(
    flag("--label", help="Operator label recorded in summary.json and the reports."),
    flag("--format", "formats", help=f"Report formats, comma-separated: {', '.join(FORMATS)} [default: csv]."),
    flag("--compare-to", type=DIRECTORY, help="An earlier run's --out: write delta.csv of what changed since."),
)

SHARDING = OptionGroup(
    flag(
        "--shard",
        "shard_text",
        metavar="K/N",
        help="Check only shard K of N (0 <= K < N); N runs with K = 0..N-1 cover every row once.",
    ),
    flag(
        "--shards",
        "shard_count",
        type=click.IntRange(1, 10_000),
        metavar="N",
        help="Check shard $JOB_COMPLETION_INDEX of N (Kubernetes Indexed Jobs).",
    ),
)

ESTIMATE = OptionGroup(
    flag(
        "--concurrency",
        default=16,
        show_default=True,
        type=click.IntRange(1, 1000),
        help="Requests in flight the run would use.",
    ),
    flag("--max-rps", type=click.FloatRange(min=0.1), help="Cap on requests per second the run would use."),
    flag(
        "--latency-ms",
        default=100.0,
        show_default=True,
        type=click.FloatRange(min=0.1),
        help="Expected time the platform takes to answer one request.",
    ),
)

LOG = OptionGroup(
    flag(
        "-v",
        "--verbose",
        count=True,
        help="-v: retries, throttling and token renewals; -vv: debugging (also after the command).",
    ),
    flag("--log-format", type=click.Choice(LOG_FORMATS), help="Log lines as text [default] or JSON objects."),
    flag(
        "--log-file",
        type=FILE,
        help="Write logs (INFO, DEBUG at -vv) to this file; stderr keeps warnings and progress.",
    ),
)

WATCH = OptionGroup(
    flag("-q", "--quiet", is_flag=True, help="Show no progress (warnings and the summary still print)."),
    flag(
        "--progress-interval",
        type=click.FloatRange(min=0.5),
        default=10.0,
        show_default=True,
        help="Seconds between progress lines when stderr is not a terminal (cron, CI, a file).",
    ),
    LOG,
)

METRICS = OptionGroup(
    flag(
        "--metrics-file",
        type=FILE,
        help="Write Prometheus metrics to this NAME.prom file for node_exporter's textfile collector, during the "
        "run and at its end (atomically; a failed run keeps the last success).",
    ),
    flag(
        "--pushgateway",
        metavar="URL",
        help="Push the run's metrics to this Prometheus Pushgateway at its end (push-add: a failed run does not "
        "overwrite the last success); https, or http to loopback.",
    ),
    flag("--metrics-job", help="The Pushgateway's job label [default reconcile]."),
    flag(
        "--metrics-label",
        "metrics_labels",
        type=PairType("KEY=VALUE", "region=ca", "--metrics-label"),
        multiple=True,
        metavar="KEY=VALUE",
        help="A label on every metric and in the Pushgateway's grouping key (repeatable); keep it the same from "
        "run to run. The profile's name and --label are labels too.",
    ),
)
