#!/usr/bin/env bash
# Entrypoint of the worker image (deployments/worker/Dockerfile). It
#   1. starts a Docker engine (dockerd) inside this container and waits
#      until it accepts requests on DOCKER_HOST,
#   2. loads the language image archives that `make compose-images` wrote
#      (`docker save` output) from RUNBOX_IMAGE_DIR, skipping every image
#      the engine already has at the same ID,
#   3. starts runbox-worker and marks the container ready.
# On SIGTERM it stops the worker first, so running submissions finish or
# go back to the queue, and then the engine.
#
# Usage:
#   runbox-worker-entrypoint          engine, images and worker (compose)
#   runbox-worker-entrypoint engine   engine and images only, for a pod whose
#                                     worker runs in a second container
#                                     that shares the DOCKER_HOST socket
#
# Environment:
#   DOCKER_HOST                    engine socket (default unix:///var/run/docker.sock)
#   RUNBOX_IMAGE_DIR               directory of the image archives (default /images)
#   RUNBOX_LANGUAGES               comma-separated language ids to load; empty
#                                  loads every archive in RUNBOX_IMAGE_DIR
#   RUNBOX_DOCKERD_STORAGE_DRIVER  storage driver of the inner engine; empty
#                                  lets dockerd choose (overlay2, else vfs)
#   RUNBOX_DOCKER_SOCKET_GROUP     group (name or GID) that owns the socket
#   RUNBOX_ENGINE_TIMEOUT          seconds to wait for the engine (default 60)
# plus every runbox-worker variable (docs/configuration.md).
set -euo pipefail

mode="${1:-all}"
case "$mode" in
  all | engine) ;;
  *)
    echo "runbox-worker-entrypoint: unknown mode '$mode': expected 'engine' or no argument" >&2
    exit 2
    ;;
esac

export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
image_dir="${RUNBOX_IMAGE_DIR:-/images}"
engine_timeout="${RUNBOX_ENGINE_TIMEOUT:-60}"
state_dir=/run/runbox

log() {
  printf '%s entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

if [[ "$DOCKER_HOST" != unix://* ]]; then
  log "DOCKER_HOST=$DOCKER_HOST is not a unix:// socket; the inner engine listens on a unix socket only"
  exit 2
fi
if ! [[ "$engine_timeout" =~ ^[1-9][0-9]*$ ]]; then
  log "invalid RUNBOX_ENGINE_TIMEOUT '$engine_timeout': expected a positive number of seconds"
  exit 2
fi

# A restarted container keeps its file system, including the state files
# of the engine and worker that ran before. dockerd does not start while
# its old pid file exists.
mkdir -p "$state_dir" "$(dirname "${DOCKER_HOST#unix://}")"
rm -f "$state_dir/ready" "$state_dir/worker.pid" /var/run/docker.pid \
  /var/run/docker/containerd/containerd.pid

dockerd_args=(
  --host="$DOCKER_HOST"
  # Sandboxes run with no network, so the inner engine needs neither a
  # bridge nor iptables rules, and the host's iptables flavour does not
  # matter.
  --bridge=none --iptables=false --ip-masq=false
  --log-level=warn
)
# gVisor's runsc, for RUNBOX_RUNTIME=runsc, with the flags that
# docs/security.md explains. dockerd takes runtime arguments only from a
# configuration file.
if [ -x /usr/bin/runsc ]; then
  dockerd_args+=(--config-file=/etc/runbox/runsc-daemon.json)
fi
if [ -n "${RUNBOX_DOCKERD_STORAGE_DRIVER:-}" ]; then
  dockerd_args+=(--storage-driver="$RUNBOX_DOCKERD_STORAGE_DRIVER")
fi
if [ -n "${RUNBOX_DOCKER_SOCKET_GROUP:-}" ]; then
  dockerd_args+=(--group="$RUNBOX_DOCKER_SOCKET_GROUP")
fi

# Places the inner engine's containers inside this container's cgroup, so
# the limits set on the worker container also bound its sandboxes.
setup_cgroups() {
  local own

  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # NOTE: untested, because no cgroup v2 host was available. This branch
    # follows the usual Docker-in-Docker setup.
    own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
    if [ "$own" = / ]; then
      # A private cgroup namespace: this container's cgroup is the root
      # seen here. A cgroup v2 controller can only be handed to child
      # cgroups while no process sits in the parent, so every process
      # moves to a child first.
      mkdir -p /sys/fs/cgroup/entrypoint
      local pid controller controllers=()

      while read -r pid; do
        echo "$pid" > /sys/fs/cgroup/entrypoint/cgroup.procs 2>/dev/null || true
      done < /sys/fs/cgroup/cgroup.procs

      read -r -a controllers < /sys/fs/cgroup/cgroup.controllers
      for controller in "${controllers[@]}"; do
        echo "+$controller" > /sys/fs/cgroup/cgroup.subtree_control
      done
    elif [ -d "/sys/fs/cgroup$own" ]; then
      dockerd_args+=(--cgroup-parent="$own/runbox")
    fi
    return 0
  fi

  # cgroup v1. Where the host's whole hierarchy is visible (the unprivileged
  # compose file mounts it), dockerd's default parent /docker would be the
  # host engine's directory, so the parent becomes this container's own
  # cgroup. Where only this container's cgroup is mounted, the default
  # parent already nests inside it.
  own=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
  if [ -n "$own" ] && [ "$own" != / ] && [ -d "/sys/fs/cgroup/memory$own" ]; then
    dockerd_args+=(--cgroup-parent="$own/runbox")
  fi
}
setup_cgroups

# Prints dockerd's messages to stderr without the info lines that its
# containerd shims write for every container start and stop, which
# --log-level does not reach.
filter_engine_log() {
  grep --line-buffered -v -e 'level=info' -e 'cleaning up after shim disconnected' \
    -e 'cleanup warnings' >&2 || true
}

log "starting dockerd ${dockerd_args[*]}"
dockerd "${dockerd_args[@]}" > >(filter_engine_log) 2>&1 &
dockerd_pid=$!
worker_pid=

# Stops the worker, then the engine, and exits with the given status.
shutdown() {
  local status=$1
  trap - TERM INT
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    log "stopping runbox-worker (pid $worker_pid)"
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if kill -0 "$dockerd_pid" 2>/dev/null; then
    log "stopping dockerd (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -f "$state_dir/ready" "$state_dir/worker.pid"
  exit "$status"
}
trap 'shutdown 0' TERM INT

start=$SECONDS
until docker version >/dev/null 2>&1; do
  if ! kill -0 "$dockerd_pid" 2>/dev/null; then
    log "dockerd exited during start; see its messages above"
    shutdown 1
  fi
  if (( SECONDS - start >= engine_timeout )); then
    log "dockerd timed out: no response on $DOCKER_HOST within ${engine_timeout}s"
    shutdown 1
  fi
  sleep 0.5
done
log "engine ready in $((SECONDS - start))s: $(docker info -f 'ID {{.ID}}, storage driver {{.Driver}}, cgroup {{.CgroupVersion}}')"

# Loads the archives selected by RUNBOX_LANGUAGES. Each archive <id>.tar
# comes with <id>.image, one line "<tag> <image ID>", written by
# `make compose-images`. An image whose tag already has that ID is skipped.
# The caller runs this in an if, where set -e does not apply, so every
# failure returns 1 explicitly.
load_images() {
  local ids=() id archive tag want have loaded=0 skipped=0 start=$SECONDS
  if [ ! -d "$image_dir" ]; then
    log "image directory $image_dir is missing; mount the output of 'make compose-images' there"
    return 1
  fi
  IFS=', ' read -r -a ids <<< "${RUNBOX_LANGUAGES:-}"
  if [ ${#ids[@]} -eq 0 ]; then
    for archive in "$image_dir"/*.tar; do
      [ -e "$archive" ] && ids+=("$(basename "$archive" .tar)")
    done
  fi
  if [ ${#ids[@]} -eq 0 ]; then
    log "no image archives in $image_dir; run 'make compose-images' on the host"
    return 1
  fi
  for id in "${ids[@]}"; do
    [ -n "$id" ] || continue
    archive="$image_dir/$id.tar"
    if [ ! -f "$archive" ] || [ ! -f "$image_dir/$id.image" ]; then
      log "language '$id' has no archive $archive or $image_dir/$id.image; run 'make compose-images LANGUAGES=$id'"
      return 1
    fi
    tag='' want=''
    read -r tag want < "$image_dir/$id.image" || true
    if [ -z "$want" ]; then
      log "$image_dir/$id.image is not one line \"<tag> <image ID>\"; run 'make compose-images LANGUAGES=$id'"
      return 1
    fi
    have=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    if [ "$have" = "$want" ]; then
      skipped=$((skipped + 1))
      continue
    fi
    log "loading $tag from $archive"
    if ! docker load -q -i "$archive" >/dev/null; then
      log "loading $archive failed"
      return 1
    fi
    loaded=$((loaded + 1))
  done
  log "images ready in $((SECONDS - start))s: $loaded loaded, $skipped already present"
}

if ! load_images; then
  shutdown 1
fi

if [ "$mode" = engine ]; then
  touch "$state_dir/ready"
  log "engine ready; waiting for dockerd (pid $dockerd_pid)"
  status=0
  wait "$dockerd_pid" || status=$?
  log "dockerd exited with status $status"
  shutdown "$status"
fi

runbox-worker &
worker_pid=$!
echo "$worker_pid" > "$state_dir/worker.pid"
touch "$state_dir/ready"

# Waits until the worker or the engine exits. A SIGTERM interrupts the
# wait too, and its trap then stops both and exits.
status=0
wait -n "$worker_pid" "$dockerd_pid" || status=$?
if ! kill -0 "$dockerd_pid" 2>/dev/null; then
  log "dockerd exited with status $status; stopping the worker"
  shutdown 1
fi
log "runbox-worker exited with status $status"
shutdown "$status"
