# reconcile in a container: slim Python, the package installed from this checkout's files, a non-root user.
#
#   docker build -t reconcile .
#   docker run --rm reconcile --help
#   docker run --rm reconcile demo --out /reports/demo      # the bundled emulator, no network needed
#
# The image holds no secret and no configuration: pass CALLJOURNEY_* variables (the secret from your
# orchestrator's secret store, or a mounted file with --client-secret-file) and mount a volume on /reports.
# deploy/README.md shows docker compose, a Kubernetes Indexed Job and cron.
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

# Build from a copy of the sources, then drop it: the installed package is all the image needs.
COPY pyproject.toml README.md /tmp/src/
COPY reconcile /tmp/src/reconcile
RUN pip install /tmp/src && rm -rf /tmp/src

# The sample manifests (for `reconcile demo` and the compose example), the Kubernetes exit-code wrapper,
# and /reports, owned by the user so that a named volume mounted there starts writable.
COPY sample_manifests /app/sample_manifests
COPY deploy/container/reconcile-job /usr/local/bin/reconcile-job
RUN chmod 0755 /usr/local/bin/reconcile-job \
 && mkdir -p /reports \
 && chown reconcile:reconcile /reports /app

WORKDIR /app
USER 10001:10001
ENTRYPOINT ["reconcile"]
CMD ["--help"]
