#!/bin/sh
# Migrate, load the default boundaries when the database has none, then serve.
set -eu
: "${DATABASE_URL:?DATABASE_URL is required in the container}"
borderwatch migrate
if [ "${BORDERWATCH_LOAD_DEFAULTS:-1}" = "1" ]; then
    borderwatch geodata load --if-empty
fi
exec uvicorn app.main:create_app --factory --host "${BORDERWATCH_HOST}" --port "${BORDERWATCH_PORT}" --no-server-header --workers "${BORDERWATCH_WORKERS:-1}"
