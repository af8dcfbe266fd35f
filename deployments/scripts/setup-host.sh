#!/usr/bin/env bash
# Installs and starts what Runbox needs on a Debian host: the Docker engine
# and Redis from Debian's packages, plus, with --test, Chromium for the
# browser test and docker-compose for test/compose. Safe to run again: it
# installs only what is missing and starts only what is not running.
set -euo pipefail

want_test_tools=false
[ "${1:-}" = "--test" ] && want_test_tools=true

log_dir=/var/log/runbox
mkdir -p "$log_dir"

apt_updated=false
# Installs the Debian packages that are not installed yet.
install_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  if ! $apt_updated; then
    apt-get update -q >/dev/null
    apt_updated=true
  fi
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >"$log_dir/apt.log" 2>&1 \
    || { tail -n 20 "$log_dir/apt.log" >&2; exit 1; }
}

# gVisor's runsc is installed for the tests, whose hostile suite also runs
# under it, and when the sandbox runtime is set to it.
want_runsc=false
if $want_test_tools || [ "${RUNBOX_RUNTIME:-}" = "runsc" ]; then
  want_runsc=true
fi

packages=(docker.io redis-server debootstrap ca-certificates curl)
$want_test_tools && packages+=(chromium docker-compose)
$want_runsc && packages+=(runsc)
install_packages "${packages[@]}"

# Registers runsc with the engine, with the same file as the worker image
# uses. --oci-seccomp makes gVisor apply the container's seccomp profile to
# the program, as runc does. The ptrace platform needs no KVM, and
# --network=none turns gVisor's network stack off. An existing daemon.json
# without runsc is left alone, with a message.
engine_config=/etc/docker/daemon.json
engine_config_changed=false
if $want_runsc; then
  if [ ! -e "$engine_config" ]; then
    mkdir -p /etc/docker
    cp "$(dirname "$0")/../worker/runsc-daemon.json" "$engine_config"
    echo "setup: registered runsc in $engine_config"
    engine_config_changed=true
  elif ! grep -q '"runsc"' "$engine_config"; then
    echo "setup: $engine_config exists without a runsc runtime; add the one from docs/security.md to use gVisor" >&2
  fi
fi

# The Docker engine: started by hand where no init system runs it.
if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd (log: $log_dir/dockerd.log)"
  nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "setup: dockerd did not start; last lines of its log:" >&2
    tail -n 20 "$log_dir/dockerd.log" >&2
    exit 1
  fi
fi

# dockerd reloads its runtimes on SIGHUP, so a running engine needs no
# restart. The pid comes from the host engine's pid file, because pidof also
# lists the engines inside Docker-in-Docker containers.
if $engine_config_changed && [ -s /var/run/docker.pid ]; then
  kill -HUP "$(cat /var/run/docker.pid)"
  for _ in $(seq 1 20); do
    docker info -f '{{json .Runtimes}}' 2>/dev/null | grep -q runsc && break
    sleep 0.5
  done
fi

# Redis for `make run`, with an append-only file and no eviction, so that
# queued submissions survive a restart and are never evicted. Tests start
# their own Redis containers and do not need this one.
redis_port="${RUNBOX_REDIS_PORT:-6379}"
# Each port gets its own data directory and log, so two instances never
# share an append-only file.
redis_dir=/var/lib/runbox/redis
redis_log="$log_dir/redis.log"
if [ "$redis_port" != 6379 ]; then
  redis_dir="/var/lib/runbox/redis-$redis_port"
  redis_log="$log_dir/redis-$redis_port.log"
fi
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  mkdir -p "$redis_dir"
  echo "setup: starting redis-server on 127.0.0.1:$redis_port (data: $redis_dir)"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
    --dir "$redis_dir" --appendonly yes --maxmemory-policy noeviction \
    --logfile "$redis_log"
  for _ in $(seq 1 20); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
echo "setup: docker engine $(docker version -f '{{.Server.Version}}') and redis on port $redis_port are running"
