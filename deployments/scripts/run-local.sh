#!/usr/bin/env bash
# Runs the API and one worker in the foreground on this host until Ctrl+C.
# `make run` calls it after setup, images and build.
set -euo pipefail
cd "$(dirname "$0")/../.."

export RUNBOX_HTTP_ADDR="${RUNBOX_HTTP_ADDR:-127.0.0.1:8080}"
# The Redis that setup-host.sh started, on RUNBOX_REDIS_PORT.
export RUNBOX_REDIS_URL="${RUNBOX_REDIS_URL:-redis://127.0.0.1:${RUNBOX_REDIS_PORT:-6379}/0}"

bin/runbox-worker &
worker=$!
bin/runbox-api &
api=$!
trap 'kill -TERM $api $worker 2>/dev/null; wait $api $worker 2>/dev/null' INT TERM EXIT

for _ in $(seq 1 50); do
  curl -fsS "http://$RUNBOX_HTTP_ADDR/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
# The health check may have reached another instance on the same address,
# so check that this API is still running.
if ! kill -0 "$api" 2>/dev/null; then
  echo "run: the API exited, maybe because $RUNBOX_HTTP_ADDR is in use. Set RUNBOX_HTTP_ADDR to another address." >&2
  exit 1
fi
echo
echo "Runbox is running: http://$RUNBOX_HTTP_ADDR/  (Ctrl+C stops it)"
echo "Each language becomes available once the worker's self-test has run it (see /api/v1/languages)."
echo
wait -n $api $worker
