#!/bin/sh
# Nightly reconciliation, for cron: one dated report directory per night, compared with the previous night's,
# a log file per night, the history of all nights (history.csv, history.html) beside them, and a one-line
# message (mailed by cron) only when something needs a person.
#
# Usage: nightly.sh MANIFEST_OR_DIRECTORY...
# Environment:
#   RECONCILE_REPORTS  where the dated report directories and logs/ go   [/var/lib/reconcile/reports]
#   RECONCILE_DAY      the night to run or resume, YYYY-MM-DD              [today]
#   RECONCILE_METRICS_DIR  node_exporter's textfile collector directory: the run's metrics go to
#                      reconcile-nightly.prom there, during the run and at its end   [no metrics]
#   CALLJOURNEY_*      the settings, as for `reconcile run` (e.g. CALLJOURNEY_PROFILE, CALLJOURNEY_CONFIG,
#                      CALLJOURNEY_CLIENT_SECRET_FILE)
#
# Exit codes are reconcile's: 0 every recording present, 1 some missing, 3 some rows invalid or in error,
# 2 usage error, 4 fatal (credentials, endpoint, platform), 130/143 interrupted; and 75 when the previous run
# is still going. Running it again for the same day resumes that day's run where it stopped.
set -u

if [ "$#" -eq 0 ]; then
    echo "usage: $0 MANIFEST_OR_DIRECTORY..." >&2
    exit 2
fi
reports=${RECONCILE_REPORTS:-/var/lib/reconcile/reports}
day=${RECONCILE_DAY:-$(date +%F)}
out="$reports/$day"
log="$reports/logs/$day.log"
mkdir -p "$reports/logs" || exit 2

# One run at a time: a night that overruns must not race the next one over the same files.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$reports/.nightly.lock"
    if ! flock -n 9; then
        echo "reconcile nightly $day: the previous run is still going; not starting another" >&2
        exit 75
    fi
fi

# The latest earlier night with a report, to compare with (the glob lists the days in order).
previous=""
for dir in "$reports"/[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]; do
    if [ -f "$dir/summary.json" ] && expr "${dir##*/}" \< "$day" >/dev/null; then
        previous=$dir
    fi
done

echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) nightly $day: $*" >>"$log"
# Metrics for Prometheus: a failed night keeps the last success in the file, for the 26-hour alert.
if [ -n "${RECONCILE_METRICS_DIR:-}" ]; then
    set -- "$@" --metrics-file "$RECONCILE_METRICS_DIR/reconcile-nightly.prom"
fi
if [ -n "$previous" ]; then
    reconcile run "$@" --out "$out" --compare-to "$previous" >>"$log" 2>&1
else
    reconcile run "$@" --out "$out" >>"$log" 2>&1
fi
code=$?
echo "=== exit $code" >>"$log"

# Every night so far side by side ($reports/history.csv, history.html), whatever this night's outcome; it reads
# only each night's summary.json, so it takes seconds even after years.  Its failure does not change the exit code.
if ! reconcile history "$reports" >>"$log" 2>&1; then
    echo "reconcile nightly $day: the history of the nights could not be written: see $log" >&2
fi

case "$code" in
    0) ;;
    1) echo "reconcile nightly $day: recordings are missing: $out/missing.csv${previous:+ (changes since ${previous##*/}: $out/delta.csv)}" ;;
    3) echo "reconcile nightly $day: some rows are invalid or could not be checked: $out/results.csv (log: $log)" ;;
    2) echo "reconcile nightly $day: usage error (manifest or options), nothing checked: see $log" >&2 ;;
    4) echo "reconcile nightly $day: FAILED (credentials, endpoint or platform), no row called missing: see $log" >&2 ;;
    130 | 143) echo "reconcile nightly $day: interrupted; run this script again to resume: see $log" >&2 ;;
    *) echo "reconcile nightly $day: exit $code: see $log" >&2 ;;
esac
exit "$code"
