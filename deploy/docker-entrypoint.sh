#!/bin/sh
# Container entrypoint: prepare the Prometheus multiprocess directory, then exec the command
# (so the server is PID 1's direct replacement and receives SIGTERM for graceful shutdown).
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    # Stale *.db files from a previous run would be aggregated into /metrics: start empty.
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -type f -delete
fi
exec "$@"
