"""deploy/, the Dockerfile and docker-compose.yml: they parse, every command they run is a real `reconcile` command
with options the CLI accepts, and what can run here (healthcheck, cron wrapper, job wrapper) does.

No Docker engine or Kubernetes cluster is available: the Kubernetes objects are checked against the API's JSON
schemas (strict: unknown fields fail) with kubernetes-validate instead."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import kubernetes_validate
import pytest
import yaml

from reconcile.cli import cli
from reconcile.cli._profiles import load_profile
from reconcile.config._settings import Settings, check_url
from reconcile.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID
from reconcile.emulator.command import emulator as emulator_command
from tests.conftest import REPO, SAMPLES

COMMANDS: dict[str, click.Command] = {**cli.commands, "emulator": emulator_command}
KUBERNETES = REPO / "deploy" / "kubernetes"
CRON = REPO / "deploy" / "cron"
JOB_WRAPPER = REPO / "deploy" / "container" / "reconcile-job"
# Every CALLJOURNEY_ variable reconcile reads: a misspelt one in a deployment file would be silently ignored.
KNOWN_VARIABLES = {
    f"CALLJOURNEY_{name}"
    for name in (
        "TENANT_ID",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "CLIENT_SECRET_FILE",
        "BASE_URL",
        "AUTHORITY",
        "SCOPE",
        "ENDPOINT_PATH",
        "CONCURRENCY",
        "TIMEOUT",
        "MAX_ATTEMPTS",
        "MAX_RETRY_TIME",
        "MAX_RPS",
        "CA_BUNDLE",
        "TRUST_STORE",
        "PROXY",
        "CLIENT_CERTIFICATE",
        "CLIENT_CERTIFICATE_PASSWORD",
        "ASSERTION_ALG",
        "FEDERATED_TOKEN_FILE",
        "CONFIG",
        "PROFILE",
    )
}


def parse_command(argv: list[str]) -> click.Context:
    """Parse ``reconcile ARGV`` exactly as the CLI would (strict: an unknown option or a bad value raises)."""
    name, *args = argv
    assert name in COMMANDS, f"{name!r} is not a reconcile command"
    return COMMANDS[name].make_context(name, args)


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_the_command_check_is_strict() -> None:
    """parse_command refuses an unknown option, a bad value and an unknown command, so the checks below mean it."""
    assert parse_command(["run", "m.csv", "--out", "o", "--shards", "4"]).params["shard_count"] == 4
    with pytest.raises(click.NoSuchOption):
        parse_command(["run", "m.csv", "--out", "o", "--shard-count", "4"])
    with pytest.raises(click.BadParameter):
        parse_command(["run", "m.csv", "--out", "o", "--max-rps", "lots"])
    with pytest.raises(AssertionError, match="not a reconcile command"):
        parse_command(["reconcille", "m.csv"])


# -- Dockerfile and .dockerignore ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docker_ignores(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, '/'-separated) out of the build context: the last pattern
    that matches the path or one of its parent directories decides; '!' re-includes."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name (``AS name``; the last one also as ``runtime``), each its steps after FROM."""
    stages: dict[str, list[tuple[str, str]]] = {}
    steps: list[tuple[str, str]] = []
    for kind, args in dockerfile():
        if kind == "FROM":
            words = args.split()
            steps = [(kind, words[0])]
            stages[words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage {len(stages)}"] = steps
        else:
            steps.append((kind, args))
    stages["runtime"] = steps
    return stages


def copy_sources(steps: list[tuple[str, str]]) -> list[str]:
    """The build-context paths the COPY steps copy (not those copied from another stage)."""
    copies = [shlex.split(args) for kind, args in steps if kind == "COPY"]
    return [source for copy in copies if not any(w.startswith("--from=") for w in copy) for source in copy[:-1]]


def test_dockerfile_builds_a_wheel_and_installs_it_alone_for_a_non_root_user() -> None:
    """Multi-stage: a build stage makes the wheel from the project's files; the python:3.11-slim runtime stage
    pip-installs that wheel (no sources reach it), runs as a numeric non-root USER, ENTRYPOINT reconcile."""
    stages = dockerfile_stages()
    build, runtime = stages["build"], stages["runtime"]
    assert build[0] == ("FROM", "python:3.11-slim")
    assert runtime[0] == ("FROM", "python:3.11-slim")
    assert runtime is not build
    assert {"pyproject.toml", "README.md", "reconcile"} <= set(copy_sources(build))
    wheel_step = next(args for kind, args in build if kind == "RUN" and "python -m build --wheel" in args)
    outdir = re.search(r"--outdir (\S+)", wheel_step)
    assert outdir, wheel_step
    fetched = [shlex.split(args) for kind, args in runtime if kind == "COPY" and "--from=build" in args]
    assert [copy[1:] for copy in fetched] == [[outdir[1], "/tmp/dist"]]
    assert any(kind == "RUN" and "pip install /tmp/dist/*.whl" in args for kind, args in runtime)
    assert not {"pyproject.toml", "reconcile"} & set(copy_sources(runtime)), "the runtime stage gets the wheel only"
    users = [args for kind, args in runtime if kind == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert json.loads(next(args for kind, args in runtime if kind == "ENTRYPOINT")) == ["reconcile"]
    assert any(kind == "RUN" and "chown reconcile:reconcile /reports" in args for kind, args in runtime)


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    """Each COPY source exists in the checkout and .dockerignore lets it in; --from names an earlier stage."""
    stages = dockerfile_stages()
    sources = [source for steps in stages.values() for source in copy_sources(steps)]
    assert "reconcile" in sources
    assert "sample_manifests" in sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not docker_ignores(source), f"{source} is copied but .dockerignore excludes it"
    assert not docker_ignores("reconcile/cli.py")
    assert not docker_ignores("reconcile/ops/demo_manifests/smoke-10.csv")
    for kind, args in stages["runtime"]:
        if kind == "COPY" and (stage := re.search(r"--from=(\S+)", args)):
            assert stage[1] in stages, args


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tests/test_cli.py",
        "reconcile-demo/results.csv",
        "reconcile/__pycache__/cli.cpython-311.pyc",
        "bench/run.py",
        "client-secret.txt",
    ],
)
def test_dockerignore_keeps_secrets_and_clutter_out(path: str) -> None:
    """.env (which may hold the secret), the git history, the virtualenv and outputs never reach an image."""
    assert docker_ignores(path)


# -- docker-compose.yml ----------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def test_compose_runs_real_commands_over_loopback_after_the_emulator_is_healthy() -> None:
    """The emulator and the one-shot run are real commands; the run waits for health, shares the emulator's
    network namespace, and its URLs pass the loopback rule (http://emulator:8080 would not)."""
    services = compose()["services"]
    emulator, run = services["emulator"], services["reconcile"]
    assert parse_command(emulator["command"]).params["host"] == "0.0.0.0"
    params = parse_command(run["command"]).params
    assert run["depends_on"] == {"emulator": {"condition": "service_healthy"}}
    assert run["network_mode"] == "service:emulator"
    environment = run["environment"]
    assert set(environment) <= KNOWN_VARIABLES
    for name in ("CALLJOURNEY_BASE_URL", "CALLJOURNEY_AUTHORITY"):
        assert check_url(environment[name]) is None, environment[name]
    assert check_url("http://emulator:8080") is not None  # why the namespace is shared
    assert environment["CALLJOURNEY_CLIENT_SECRET"] == DEMO_CLIENT_SECRET  # only the public demo secret
    assert (environment["CALLJOURNEY_TENANT_ID"], environment["CALLJOURNEY_CLIENT_ID"]) == (
        DEMO_TENANT_ID,
        DEMO_CLIENT_ID,
    )
    volume, target = run["volumes"][0].split(":")[:2]
    assert volume in compose()["volumes"]
    assert str(params["out_dir"]).startswith(target + "/")
    manifest = Path(params["manifests"][0])
    assert manifest.parent == Path("/app/sample_manifests")
    assert (SAMPLES / manifest.name).is_file()
    assert emulator["image"] == run["image"]
    assert emulator["build"] == "."


def healthcheck_code(url: str) -> str:
    test = compose()["services"]["emulator"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code: str = test[3]
    assert "http://127.0.0.1:8080" in code
    return code.replace("http://127.0.0.1:8080", url)


@pytest.mark.slow
def test_compose_healthcheck_passes_on_a_running_emulator_only(emulator_process_url: str) -> None:
    """The healthcheck's python, run here: exit 0 against the emulator (401 without a token), 1 when nothing listens."""
    ok = subprocess.run([sys.executable, "-c", healthcheck_code(emulator_process_url)], timeout=30, check=False)
    down = subprocess.run([sys.executable, "-c", healthcheck_code("http://127.0.0.1:9")], timeout=30, check=False)
    assert (ok.returncode, down.returncode) == (0, 1)


# -- Kubernetes ------------------------------------------------------------------------------------------------


def objects() -> dict[str, dict[str, Any]]:
    """Every object of deploy/kubernetes/, by kind/name."""
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_yaml(path):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def jobs() -> tuple[dict[str, Any], dict[str, Any]]:
    all_jobs = [o for o in objects().values() if o["kind"] == "Job"]
    indexed = [j for j in all_jobs if j["spec"].get("completionMode") == "Indexed"]
    merging = [j for j in all_jobs if j not in indexed and _component(j) == "merge"]
    assert len(indexed) == len(merging) == 1
    return indexed[0], merging[0]


def _component(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"]["app.kubernetes.io/component"])


def test_the_history_job_puts_every_run_of_the_volume_side_by_side() -> None:
    """After the merge, a Job runs `reconcile history` (a real command) over the reports volume the others write,
    non-root and bounded like them, named for the same run."""
    (history,) = [j for j in objects().values() if j["kind"] == "Job" and _component(j) == "history"]
    indexed, merging = jobs()
    spec, pod = container(history), history["spec"]["template"]["spec"]
    params = parse_command(reconcile_argv(spec)).params
    reports = {m["name"]: m["mountPath"] for m in container(merging)["volumeMounts"]}["reports"]
    assert params["directories"] == (Path(reports),)
    assert params["out_dir"] is None  # the history goes beside the runs, into the volume's root
    assert str(parse_command(reconcile_argv(container(merging))).params["out_dir"]).startswith(f"{reports}/$(RUN_ID)")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(spec["resources"])
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
    assert (
        claims["reports"]
        == {v["name"]: v.get("persistentVolumeClaim") for v in indexed["spec"]["template"]["spec"]["volumes"]}[
            "reports"
        ]
    )
    run_id = {e["name"]: e.get("value") for e in container(merging)["env"]}["RUN_ID"]
    assert history["metadata"]["name"].endswith(run_id)


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def reconcile_argv(spec: dict[str, Any]) -> list[str]:
    """What the container runs as reconcile's arguments: ENTRYPOINT reconcile, or the reconcile-job wrapper."""
    assert spec.get("command") in (None, ["reconcile-job"]), spec.get("command")
    args: list[str] = spec["args"]
    return args


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_kubernetes_objects_match_the_api_schema(version: str) -> None:
    """Every object validates against the Kubernetes API schema, strictly (an unknown or misplaced field fails)."""
    found = objects()
    assert {"ConfigMap/reconcile-config", "PersistentVolumeClaim/reconcile-reports"} <= set(found)
    for name, doc in found.items():
        assert kubernetes_validate.validate(doc, version, strict=True), name


def test_the_job_is_indexed_with_one_pod_per_shard_and_a_share_of_the_budget() -> None:
    """completions == parallelism == --shards; --max-rps x shards == the platform budget; a real `run` command."""
    job, _ = jobs()
    spec = job["spec"]
    params = parse_command(reconcile_argv(container(job))).params
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == params["shard_count"] > 1
    budget = float(job["metadata"]["annotations"]["reconcile.calljourney.com/platform-max-rps"])
    assert params["max_rps"] * params["shard_count"] == pytest.approx(budget)
    assert "$(JOB_COMPLETION_INDEX)" in str(params["out_dir"])
    assert params["shard_text"] is None


@pytest.mark.parametrize("which", [0, 1])
def test_containers_are_non_root_bounded_and_expand_only_declared_variables(which: int) -> None:
    """Non-root, no privilege escalation, resources set; every $(VAR) in args is declared in env (or Kubernetes
    leaves it unexpanded); the CALLJOURNEY_ variables are real ones; no secret value is written in the YAML."""
    job = jobs()[which]
    pod = job["spec"]["template"]["spec"]
    spec = container(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(spec["resources"])
    declared = {e["name"] for e in spec.get("env", [])}
    used = set(re.findall(r"\$\((\w+)\)", " ".join(spec["args"])))
    assert used
    assert used <= declared
    assert {n for n in declared if n.startswith("CALLJOURNEY_")} <= KNOWN_VARIABLES
    assert not [e for e in spec.get("env", []) if "SECRET" in e["name"] and "value" in e]
    mounts = {m["name"] for m in spec["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}


def test_the_secret_comes_from_a_kubernetes_secret_and_the_config_from_a_config_map() -> None:
    """--client-secret-file is in a mounted Secret; CALLJOURNEY_CONFIG is the mounted ConfigMap's reconcile.toml."""
    job, _ = jobs()
    pod, spec = job["spec"]["template"]["spec"], container(job)
    params = parse_command(reconcile_argv(spec)).params
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in spec["volumeMounts"]}
    assert "secret" in mounts[str(params["client_secret_file"].parent)]
    env = {e["name"]: e.get("value") for e in spec["env"]}
    config = Path(env["CALLJOURNEY_CONFIG"])
    config_map = mounts[str(config.parent)]["configMap"]["name"]
    assert config.name in objects()[f"ConfigMap/{config_map}"]["data"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert {f"PersistentVolumeClaim/{c}" for c in claims} <= set(objects())


def test_the_config_map_is_a_valid_profile(tmp_path: Path) -> None:
    """The ConfigMap's reconcile.toml loads with the job's --profile: known keys, no secret, https URLs."""
    job, _ = jobs()
    params = parse_command(reconcile_argv(container(job))).params
    (config_map,) = [o for o in objects().values() if o["kind"] == "ConfigMap"]
    (tmp_path / "reconcile.toml").write_text(config_map["data"]["reconcile.toml"], encoding="utf-8")
    profile = load_profile(tmp_path / "reconcile.toml", params["profile"], environ={}, dotenv=None)
    assert check_url(profile.settings["base_url"]) is None
    assert profile.settings["base_url"].startswith("https://")


def test_the_merge_job_merges_exactly_the_shards_of_the_same_run() -> None:
    """merge lists shard-0..shard-(N-1) of the indexed job's --out, for the same RUN_ID, into a directory of its own."""
    indexed, merging = jobs()
    shard_params = parse_command(reconcile_argv(container(indexed))).params
    merge_argv = reconcile_argv(container(merging))
    assert merge_argv[0] == "merge"
    params = parse_command(merge_argv).params
    pattern = str(shard_params["out_dir"])
    assert [str(d) for d in params["shard_dirs"]] == [
        pattern.replace("$(JOB_COMPLETION_INDEX)", str(k)) for k in range(shard_params["shard_count"])
    ]
    assert str(params["out_dir"]) not in pattern
    run_ids = [{e["name"]: e.get("value") for e in container(j)["env"]}["RUN_ID"] for j in (indexed, merging)]
    assert run_ids[0] == run_ids[1]
    assert all(j["metadata"]["name"].endswith(run_ids[0]) for j in (indexed, merging))


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (1, 0), (3, 0), (2, 2), (4, 4), (130, 130)])
def test_job_wrapper_turns_findings_into_success(code: int, expected: int, tmp_path: Path) -> None:
    """reconcile-job: exit 1 (missing) and 3 (invalid/error rows) become 0; usage, fatal and signals pass through."""
    fake = tmp_path / "reconcile"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nexit {code}\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(JOB_WRAPPER), "run", "a b.csv", "--out", "o"], env=env, check=False, timeout=30)
    assert result.returncode == expected
    assert (tmp_path / "args").read_text(encoding="utf-8") == "run a b.csv --out o\n"


def test_job_wrapper_passes_sigterm_on_and_returns_reconciles_code(tmp_path: Path) -> None:
    """SIGTERM to the wrapper (PID 1 in a pod) reaches reconcile, and the wrapper exits with reconcile's own code."""
    fake = tmp_path / "reconcile"
    fake.write_text(
        f"#!/bin/sh\ntrap 'echo stopped > {tmp_path}/marker; exit 99' TERM\ntouch {tmp_path}/started\n"
        "i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\nexit 0\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    with subprocess.Popen(["sh", str(JOB_WRAPPER), "run"], env=env) as wrapper:
        deadline = time.monotonic() + 10
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=10) == 99
    assert (tmp_path / "marker").read_text(encoding="utf-8") == "stopped\n"


# -- cron ------------------------------------------------------------------------------------------------------


def cron_entries() -> tuple[dict[str, str], list[list[str]]]:
    """The cron file's variables, and its jobs as [minute, hour, day, month, weekday, user, command...]."""
    variables, jobs_found = {}, []
    for line in (CRON / "reconcile-nightly.cron").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.fullmatch(r"[A-Z_]+=.*", line):
            name, _, value = line.partition("=")
            variables[name] = value
        else:
            jobs_found.append(line.split())
    return variables, jobs_found


def script_commands(path: Path) -> list[list[str]]:
    """The `reconcile ...` command lines of a shell script, up to any redirection or shell operator."""
    commands = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("reconcile "):
            words = []
            for word in shlex.split(line.strip()):
                if word[:1] in (">", "|", "&", ";") or word[:2] in ("2>", "1>"):
                    break
                words.append("manifest.csv" if word == "$@" else word)
            commands.append(words[1:])
    return commands


def test_cron_file_runs_the_nightly_script_with_known_settings() -> None:
    """One job: valid schedule, a user, nightly.sh (executable here); variables are real and hold no secret."""
    variables, entries = cron_entries()
    (entry,) = entries
    minute, hour, *_ = entry[:5]
    assert all(re.fullmatch(r"[\d*,/-]+", field) for field in entry[:5])
    assert 0 <= int(minute) < 60
    assert 0 <= int(hour) < 24
    assert entry[5] == "reconcile"
    assert Path(entry[6]).name == "nightly.sh"
    assert os.access(CRON / "nightly.sh", os.X_OK)
    calljourney = {name for name in variables if name.startswith("CALLJOURNEY_")}
    assert calljourney <= KNOWN_VARIABLES
    assert "CALLJOURNEY_CLIENT_SECRET" not in calljourney


def test_nightly_script_runs_real_commands() -> None:
    """Each `reconcile` line of nightly.sh parses as a run with options the CLI accepts."""
    commands = script_commands(CRON / "nightly.sh")
    assert len(commands) == 2
    for argv in commands:
        assert parse_command(argv).params["out_dir"] == Path("$out")


def test_nightly_script_writes_the_history_after_each_night() -> None:
    """nightly.sh runs `reconcile history` over the reports directory (a real command), after the night's run,
    and a failed history changes nothing of the night's exit code."""
    script = (CRON / "nightly.sh").read_text(encoding="utf-8")
    (line,) = [line for line in script.splitlines() if "reconcile history" in line]
    words = shlex.split(line.split("reconcile ", 1)[1].split(">>", 1)[0])
    assert parse_command(words).params["directories"] == (Path("$reports"),)
    assert script.index("reconcile history") > script.index("code=$?")
    assert script.rstrip().endswith('exit "$code"')


def nightly(tmp_path: Path, url: str, day: str, *manifests: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **extra,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RECONCILE_REPORTS": str(tmp_path / "reports"),
        "RECONCILE_DAY": day,
        "CALLJOURNEY_TENANT_ID": DEMO_TENANT_ID,
        "CALLJOURNEY_CLIENT_ID": DEMO_CLIENT_ID,
        "CALLJOURNEY_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "CALLJOURNEY_BASE_URL": url,
        "CALLJOURNEY_AUTHORITY": url,
    }
    return subprocess.run(
        ["sh", str(CRON / "nightly.sh"), *manifests],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_nightly_script_end_to_end(emulator_process_url: str, tmp_path: Path) -> None:
    """Two nights against the emulator: dated reports, a log each, the second compared with the first, exit 1
    with a one-line message because recordings are missing, the history of both nights beside them; a third
    start while one runs exits 75."""
    manifest = str(SAMPLES / "smoke-10.csv")
    first = nightly(tmp_path, emulator_process_url, "2026-11-25", manifest)
    second = nightly(tmp_path, emulator_process_url, "2026-11-26", manifest)
    reports = tmp_path / "reports"
    assert (first.returncode, second.returncode) == (1, 1), first.stderr + second.stderr
    assert first.stdout.count("\n") == 1
    assert "missing.csv" in first.stdout
    assert "changes since 2026-11-25" in second.stdout
    assert (reports / "2026-11-26" / "delta.csv").is_file()
    assert not (reports / "2026-11-25" / "delta.csv").exists()
    assert (
        json.loads((reports / "2026-11-26" / "summary.json").read_text(encoding="utf-8"))["delta"]["counts"][
            "unchanged"
        ]
        == 10
    )
    history = [line.split(",")[0] for line in (reports / "history.csv").read_text(encoding="utf-8").splitlines()]
    assert history == ["night", "2026-11-25", "2026-11-26"]
    assert (reports / "history.html").is_file()
    log = (reports / "logs" / "2026-11-26.log").read_text(encoding="utf-8")
    assert "=== exit 1" in log
    assert "10 records" in log
    assert DEMO_CLIENT_SECRET not in log
    with open(reports / ".nightly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = nightly(tmp_path, emulator_process_url, "2026-11-27", manifest)
    assert busy.returncode == 75
    assert "still going" in busy.stderr
    assert nightly(tmp_path, emulator_process_url, "2026-11-27").returncode == 2


# -- Kubernetes with workload identity -------------------------------------------------------------------------

WORKLOAD_IDENTITY = KUBERNETES / "workload-identity" / "indexed-job.yaml"


def workload_identity_objects() -> dict[str, dict[str, Any]]:
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in load_yaml(WORKLOAD_IDENTITY)}


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_workload_identity_objects_match_the_api_schema(version: str) -> None:
    """The workload-identity variant's service account and Job validate strictly against the Kubernetes API schema."""
    found = workload_identity_objects()
    assert {"ServiceAccount/reconcile"} < set(found)
    for name, doc in found.items():
        assert kubernetes_validate.validate(doc, version, strict=True), name


def test_the_workload_identity_job_signs_in_without_any_secret(tmp_path: Path) -> None:
    """Label and annotation as AKS wants them, no Secret volume, no secret option or variable; with what the webhook
    injects, the settings load with the federated credential and the shard rules of the main Job hold."""
    found = workload_identity_objects()
    (job,) = [o for o in found.values() if o["kind"] == "Job"]
    pod = job["spec"]["template"]
    account = found[f"ServiceAccount/{pod['spec']['serviceAccountName']}"]
    assert re.fullmatch(r"[0-9a-f-]{36}", account["metadata"]["annotations"]["azure.workload.identity/client-id"])
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert not [v for v in pod["spec"]["volumes"] if "secret" in v or "projected" in v]
    spec = container(job)
    params = parse_command(reconcile_argv(spec)).params
    assert params["client_secret_file"] is None
    assert not [e for e in spec["env"] if "SECRET" in e["name"] or "secretKeyRef" in str(e.get("valueFrom"))]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == params["shard_count"]
    budget = float(job["metadata"]["annotations"]["reconcile.calljourney.com/platform-max-rps"])
    assert params["max_rps"] * params["shard_count"] == pytest.approx(budget)
    # The ConfigMap it mounts is the main file's; load its profile with what the webhook injects.
    config_name = next(v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v)
    config_map = objects()[f"ConfigMap/{config_name}"]
    (tmp_path / "reconcile.toml").write_text(config_map["data"]["reconcile.toml"], encoding="utf-8")
    (tmp_path / "token").write_text("header.payload.signature", encoding="utf-8")
    injected = {
        "AZURE_CLIENT_ID": account["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "AZURE_TENANT_ID": "11111111-1111-1111-1111-111111111111",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
        "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "token"),
    }
    profile = load_profile(tmp_path / "reconcile.toml", params["profile"], environ={}, dotenv=None)
    settings = Settings.load({}, environ=injected, dotenv=None, defaults=profile.settings)
    assert settings.credential_kind == "federated"
    assert settings.tenant_id == injected["AZURE_TENANT_ID"]
    assert settings.token_url == f"https://login.microsoftonline.com/{injected['AZURE_TENANT_ID']}/oauth2/v2.0/token"


# -- metrics: the textfile collector (cron), the Pushgateway (Kubernetes), the alert rules ----------------------

PUSHGATEWAY = KUBERNETES / "pushgateway" / "pushgateway.yaml"
PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def test_nightly_script_writes_metrics_into_the_textfile_collectors_directory(
    emulator_process_url: str, tmp_path: Path
) -> None:
    """With RECONCILE_METRICS_DIR (set in the cron file), a night leaves reconcile-nightly.prom there: Prometheus's
    parser reads it, its rows and last run are the night's summary.json's, and nothing else is left beside it."""
    from prometheus_client.parser import text_string_to_metric_families

    variables, _ = cron_entries()
    assert variables["RECONCILE_METRICS_DIR"].startswith("/var/lib/")
    collector = tmp_path / "textfile"
    collector.mkdir()
    night = nightly(
        tmp_path,
        emulator_process_url,
        "2026-11-25",
        str(SAMPLES / "smoke-10.csv"),
        RECONCILE_METRICS_DIR=str(collector),
    )
    assert night.returncode == 1, night.stderr
    assert [p.name for p in collector.iterdir()] == ["reconcile-nightly.prom"]
    text = (collector / "reconcile-nightly.prom").read_text(encoding="utf-8")
    samples = {
        (s.name, s.labels.get("status", s.labels.get("outcome", ""))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    summary = json.loads((tmp_path / "reports" / "2026-11-25" / "summary.json").read_text(encoding="utf-8"))
    assert {status: samples["reconcile_rows", status] for status in summary["counts"]} == summary["counts"]
    assert samples["reconcile_last_run_exit_code", ""] == 1
    assert (
        samples["reconcile_last_success_timestamp_seconds", ""] == samples["reconcile_last_run_timestamp_seconds", ""]
    )
    assert DEMO_CLIENT_SECRET not in text


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_pushgateway_objects_match_the_api_schema(version: str) -> None:
    """The Pushgateway's Deployment, Service, volume and web config validate strictly against the Kubernetes schema."""
    docs = load_yaml(PUSHGATEWAY)
    assert {d["kind"] for d in docs} == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    for doc in docs:
        assert kubernetes_validate.validate(doc, version, strict=True), doc["metadata"]["name"]


def test_both_jobs_push_to_the_pushgateway_service_over_verified_tls() -> None:
    """Each shard Job's --pushgateway is https to the Service's name and port (the loopback rule holds), its
    --ca-bundle is in the mounted CA ConfigMap; the Pushgateway serves TLS with the mounted Secret, keeps pushes on
    its volume, and runs non-root."""
    found = {f"{d['kind']}/{d['metadata']['name']}": d for d in load_yaml(PUSHGATEWAY)}
    (service,) = [d for d in found.values() if d["kind"] == "Service"]
    (deployment,) = [d for d in found.values() if d["kind"] == "Deployment"]
    for job in (jobs()[0], next(o for o in workload_identity_objects().values() if o["kind"] == "Job")):
        spec, pod = container(job), job["spec"]["template"]["spec"]
        params = parse_command(reconcile_argv(spec)).params
        url = urlsplit(params["pushgateway"])
        assert check_url(params["pushgateway"]) is None
        assert (url.scheme, url.hostname, url.port) == (
            "https",
            service["metadata"]["name"],
            service["spec"]["ports"][0]["port"],
        )
        assert params["metrics_job"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in spec["volumeMounts"]}
        assert mounts[str(params["ca_bundle"].parent)]["configMap"]["name"] == "reconcile-pushgateway-ca"
    pod = deployment["spec"]["template"]["spec"]
    (gateway,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 1
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    args = dict(a.lstrip("-").split("=", 1) for a in gateway["args"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in gateway["volumeMounts"]}
    web = Path(args["web.config.file"])
    web_config = yaml.safe_load(found[f"ConfigMap/{mounts[str(web.parent)]['configMap']['name']}"]["data"][web.name])
    for key in ("cert_file", "key_file"):
        assert "secret" in mounts[str(Path(web_config["tls_server_config"][key]).parent)]
    assert "persistentVolumeClaim" in mounts[str(Path(args["persistence.file"]).parent)]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True


def exported_metric_names() -> set[str]:
    """Every metric family reconcile writes, from a finished run's textfile with an earlier success carried over."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from reconcile.ops._metrics import LAST_SUCCESS, RunCollector, RunMetrics, Sample, registry_of

    run = RunMetrics(
        started=1.0, duration=1.0, rows={"missing": 1}, requests=1, retries=0, throttled=0, faults=0,
        token_fetches=1, rows_per_second=1.0, records=1, finished=2.0, exit_code=4, outcome="fatal",
    )  # fmt: skip
    text = generate_latest(registry_of(RunCollector(run, {}, [Sample(LAST_SUCCESS, (), 1.0)], with_success=True)))
    names = set()
    for family in text_string_to_metric_families(text.decode()):
        names |= {s.name for s in family.samples}
    return names


def test_alert_rules_are_a_prometheus_rules_file_over_real_metrics() -> None:
    """reconcile-rules.yaml has the shape of a Prometheus rules file (groups of alerting rules, each with its
    expression, a valid `for`, string labels and annotations), its expressions are balanced and name only metrics
    and label values reconcile exports, and the two asked-for alerts are there. (Structure only: promtool, which
    would parse the PromQL, is not available where the tests run.)"""
    from reconcile.model import Status
    from reconcile.ops._metrics import OUTCOMES

    data = yaml.safe_load((PROMETHEUS / "reconcile-rules.yaml").read_text(encoding="utf-8"))
    assert set(data) == {"groups"}
    exported = exported_metric_names()
    alerts: dict[str, str] = {}
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert isinstance(group["name"], str)
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS
            assert ("alert" in rule) != ("record" in rule)
            assert isinstance(rule["expr"], str)
            assert DURATION.fullmatch(rule.get("for", "0s"))
            for key in ("labels", "annotations"):
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in rule.get(key, {}).items())
                assert all(v.count("{{") == v.count("}}") for v in rule.get(key, {}).values())
            expr = rule["expr"]
            for opening, closing in ("()", "[]", "{}"):
                assert expr.count(opening) == expr.count(closing), rule["alert"]
            assert set(re.findall(r"\breconcile_\w+", expr)) <= exported, rule["alert"]
            assert set(re.findall(r'status="(\w+)"', expr)) <= {s.value for s in Status}
            assert {o for found in re.findall(r'outcome=~"([\w|]+)"', expr) for o in found.split("|")} <= set(OUTCOMES)
            assert rule["alert"] not in alerts
            alerts[rule["alert"]] = expr
    assert "time() - reconcile_last_success_timestamp_seconds > 26 * 3600" in alerts["ReconcileNoRecentSuccess"]
    assert 'reconcile_rows{status="missing"}' in alerts["ReconcileMissingRowsRose"]
    assert "offset 1d" in alerts["ReconcileMissingRowsRose"]


def test_the_scrape_config_loads_the_rules_and_keeps_the_pushed_labels() -> None:
    """The prometheus.yml fragment names the rules file beside it and scrapes the Pushgateway over https with
    honor_labels (else the runs' job and grouping labels would be overwritten by the scrape's)."""
    data = yaml.safe_load((PROMETHEUS / "scrape-configs.yaml").read_text(encoding="utf-8"))
    assert all((PROMETHEUS / name).is_file() for name in data["rule_files"])
    (gateway,) = [job for job in data["scrape_configs"] if job["job_name"] == "reconcile-pushgateway"]
    assert gateway["honor_labels"] is True
    assert gateway["scheme"] == "https"
    service = next(d for d in load_yaml(PUSHGATEWAY) if d["kind"] == "Service")
    (target,) = gateway["static_configs"][0]["targets"]
    assert target.split(".")[0] == service["metadata"]["name"]
    assert target.endswith(f":{service['spec']['ports'][0]['port']}")
