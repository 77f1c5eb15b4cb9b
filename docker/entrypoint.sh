#!/bin/sh
# Migrate, load the default boundaries when the database has none, then serve.
set -eu
: "${DATABASE_URL:?DATABASE_URL is required in the container}"
borderwatch migrate
if [ "${BORDERWATCH_LOAD_DEFAULTS:-1}" = "1" ]; then
    borderwatch geodata load --if-empty
fi
if [ "${BORDERWATCH_WORKERS:-1}" -gt 1 ]; then
    # /metrics merged across the workers (docs/observability.md, "Several processes"): the
    # directory (data dir/metrics unless PROMETHEUS_MULTIPROC_DIR names one) made 0700 and
    # emptied now, before any worker starts; the workers inherit its name
    PROMETHEUS_MULTIPROC_DIR="$(python -m app.observe.multiprocess)"
    export PROMETHEUS_MULTIPROC_DIR
else
    unset PROMETHEUS_MULTIPROC_DIR
fi
exec uvicorn app.main:create_app --factory --host "${BORDERWATCH_HOST}" --port "${BORDERWATCH_PORT}" --no-server-header --workers "${BORDERWATCH_WORKERS:-1}"
