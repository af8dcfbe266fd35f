#!/usr/bin/env bash
# Health check of the worker image. It passes once the entrypoint has
# loaded the images and while the engine responds. Where the entrypoint
# started the worker, the worker process must be running too.
set -euo pipefail
state_dir=/run/runbox
export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"

[ -e "$state_dir/ready" ] || { echo "not ready: images not loaded yet"; exit 1; }
docker version >/dev/null 2>&1 || { echo "engine not responding on $DOCKER_HOST"; exit 1; }
if [ -e "$state_dir/worker.pid" ]; then
  kill -0 "$(cat "$state_dir/worker.pid")" 2>/dev/null \
    || { echo "runbox-worker is not running"; exit 1; }
fi
echo ok
