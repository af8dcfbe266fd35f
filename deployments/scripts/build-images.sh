#!/usr/bin/env bash
# Builds the images Runbox runs: the Debian base (build-base.sh), runbox/redis
# from deployments/support/redis, and runbox/<id>:latest for every language
# directory deployments/images/<id>/.
#
# Each image carries the label runbox.content, a hash of its directory's files
# and of the base image's ID. An image whose label matches is skipped, so a
# second run builds nothing.
#
# Environment:
#   LANGUAGES           comma-separated language ids to build; empty builds all
#   RUNBOX_BUILD_JOBS   images built at the same time (default 2)
#   RUNBOX_BUILD_LOGS   directory of the build logs (default /tmp/runbox-build)
#   RUNBOX_BASE_IMAGE   base image (default runbox/base:bookworm)
set -euo pipefail
cd "$(dirname "$0")/../.."

# The progress output shows the legacy builder's "Step N/M" lines. BuildKit's
# "#N [x/y]" lines are recognised too, but only the legacy builder was tried.
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
export RUNBOX_BASE_IMAGE="${RUNBOX_BASE_IMAGE:-runbox/base:bookworm}"
images_dir=deployments/images
jobs="${RUNBOX_BUILD_JOBS:-2}"
log_dir="${RUNBOX_BUILD_LOGS:-${TMPDIR:-/tmp}/runbox-build}"
total_start=$SECONDS

if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "build-images: invalid RUNBOX_BUILD_JOBS '$jobs': expected a positive integer" >&2
  exit 2
fi
if ! docker info >/dev/null 2>&1; then
  echo "build-images: the Docker engine is not reachable. Start it with 'make setup'." >&2
  exit 1
fi

# Select the languages: every directory under deployments/images, or the
# ids listed in LANGUAGES.
known=()
for dir in "$images_dir"/*/; do
  [ -f "$dir/Dockerfile" ] && known+=("$(basename "$dir")")
done
selected=()
IFS=', ' read -r -a requested <<< "${LANGUAGES:-}"
for id in "${requested[@]}"; do
  [ -n "$id" ] || continue
  if [ ! -f "$images_dir/$id/Dockerfile" ]; then
    echo "build-images: unknown language '$id' in LANGUAGES. Known languages: ${known[*]}" >&2
    exit 2
  fi
  [[ " ${selected[*]} " == *" $id "* ]] || selected+=("$id")
done
[ ${#selected[@]} -gt 0 ] || selected=("${known[@]}")

mkdir -p "$log_dir"
# Lists of built, current and failed images of this run, one name a line.
state_dir=$(mktemp -d)
trap 'rm -rf "$state_dir"' EXIT
deployments/scripts/build-base.sh
base_id=$(docker image inspect -f '{{.Id}}' "$RUNBOX_BASE_IMAGE")

# Prints the content hash of a build directory: its file names, modes and
# contents, plus the base image's ID.
content_hash() {
  (
    cd "$1"
    find . -type f -printf '%m %p\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    echo "base $base_id"
  ) | sha256sum | cut -c1-16
}

# Prints the progress lines of a docker build log as they arrive: the build
# steps and apt's download and install summaries.
show_progress() {
  local name=$1 start=$2 line
  while IFS= read -r line; do
    case "$line" in
      Step\ *|\#*\ \[*|Fetched\ *|*newly\ installed*)
        printf '%-12s %4ds  %.110s\n' "$name" $((SECONDS - start)) "$line" ;;
    esac
  done
}

# Builds one image unless its runbox.content label is current. On failure it
# prints the tail of the build log and returns non-zero.
build_image() {
  local name=$1 dir=$2 tag=$3
  local content current old_id start log status

  content=$(content_hash "$dir")
  current=$(docker image inspect -f '{{index .Config.Labels "runbox.content"}}' "$tag" 2>/dev/null || true)
  if [ "$current" = "$content" ]; then
    printf '%-12s %s is up to date (%s)\n' "$name" "$tag" "$content"
    echo "$name" >> "$state_dir/current"
    return 0
  fi

  old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  log="$log_dir/$name.log"
  start=$SECONDS
  printf '%-12s building %s from %s (log: %s)\n' "$name" "$tag" "$dir" "$log"

  set +e
  docker build --force-rm --build-arg "BASE_IMAGE=$RUNBOX_BASE_IMAGE" \
      --label "runbox.content=$content" -t "$tag" "$dir" 2>&1 \
    | tee "$log" | show_progress "$name" "$start"
  status=${PIPESTATUS[0]}
  set -e

  if [ "$status" -ne 0 ]; then
    {
      printf '%-12s FAILED after %ds (exit status %d). Last lines of %s:\n' \
        "$name" $((SECONDS - start)) "$status" "$log"
      tail -n 25 "$log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    /'
    } >&2
    return 1
  fi

  # Remove the replaced image when nothing else uses it. Removal fails,
  # harmlessly, while another tag or a container still refers to it.
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi

  printf '%-12s built %s in %ds\n' "$name" "$tag" $((SECONDS - start))
  echo "$name $((SECONDS - start))" >> "$state_dir/built"
}

: > "$state_dir/built"
: > "$state_dir/current"
: > "$state_dir/failed"
# Runs build_image in the background, at most $jobs at a time, and records
# failures in $state_dir/failed.
queue_build() {
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  { build_image "$@" || echo "$1" >> "$state_dir/failed"; } &
}

queue_build redis deployments/support/redis runbox/redis:latest
for id in "${selected[@]}"; do
  queue_build "$id" "$images_dir/$id" "runbox/$id:latest"
done
wait

built=$(wc -l < "$state_dir/built")
current=$(wc -l < "$state_dir/current")
if [ -s "$state_dir/failed" ]; then
  echo "build-images: build failed for: $(tr '\n' ' ' < "$state_dir/failed")(logs in $log_dir)" >&2
  exit 1
fi
echo "build-images: done in $((SECONDS - total_start))s: $built built, $current up to date"
