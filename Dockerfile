# reconcile in a container: the wheel built in a first stage, then installed, alone, into a slim Python image
# that runs as a non-root user; the sources and the build tools stay behind in the build stage.
#
#   docker build -t reconcile .
#   docker run --rm reconcile --help
#   docker run --rm reconcile demo --out /reports/demo      # the bundled emulator, no network needed
#
# The image holds no secret and no configuration: pass CALLJOURNEY_* variables (the secret from your
# orchestrator's secret store, or a mounted file with --client-secret-file) and mount a volume on /reports.
# deploy/README.md shows docker compose, a Kubernetes Indexed Job and cron.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# What the wheel is built from (the demo's manifests are in reconcile/ as package data).
COPY pyproject.toml README.md /src/
COPY reconcile /src/reconcile
RUN pip install "build>=1.2" \
 && python -m build --wheel --outdir /dist /src

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER, and runAsUser/fsGroup
# and volume permissions can name it.
RUN groupadd --system --gid 10001 reconcile \
 && useradd --system --uid 10001 --gid reconcile --home-dir /home/reconcile --create-home \
        --shell /usr/sbin/nologin reconcile

# The built wheel, as a user installs it: the package with its data, and its dependencies from the index.
COPY --from=build /dist /tmp/dist
RUN pip install /tmp/dist/*.whl \
 && rm -rf /tmp/dist

# The sample manifests (for the compose example; `reconcile demo` reads the package's own copies), the
# Kubernetes exit-code wrapper, and /reports, owned by the user so that a named volume mounted there starts writable.
COPY sample_manifests /app/sample_manifests
COPY deploy/container/reconcile-job /usr/local/bin/reconcile-job
RUN chmod 0755 /usr/local/bin/reconcile-job \
 && mkdir -p /reports \
 && chown reconcile:reconcile /reports /app

WORKDIR /app
USER 10001:10001
ENTRYPOINT ["reconcile"]
CMD ["--help"]
