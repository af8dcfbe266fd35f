#!/usr/bin/env bash
# Builds the images that docker-compose.yml and deployments/kubernetes run,
# and the language image archives that each worker loads into its own
# Docker engine, since no registry serves them:
#   runbox/api:$RUNBOX_IMAGE_TAG     from deployments/api/Dockerfile
#   runbox/worker:$RUNBOX_IMAGE_TAG  from deployments/worker/Dockerfile
#   $RUNBOX_ARCHIVE_DIR/<id>.tar     `docker save` of runbox/<id>:latest
#   $RUNBOX_ARCHIVE_DIR/<id>.image   one line: "runbox/<id>:latest <image ID>"
# An archive whose .image file names the current image ID is not written
# again. The language images and the base image come from `make images`.
#
# Environment:
#   LANGUAGES           comma-separated language ids to archive; empty
#                       archives every language of deployments/images
#   RUNBOX_ARCHIVE_DIR  archive directory (default /var/lib/runbox/images)
#   RUNBOX_IMAGE_TAG    tag of the api and worker images (default latest)
#   RUNBOX_BIN_DIR      directory holding runbox-api and runbox-worker,
#                       built with CGO_ENABLED=0 (default bin, from `make build`)
#   RUNBOX_BASE_IMAGE   base image (default runbox/base:bookworm)
set -euo pipefail
cd "$(dirname "$0")/../.."

# The legacy builder needs no buildx plugin, which the engine's Debian
# package does not ship.
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
base_image="${RUNBOX_BASE_IMAGE:-runbox/base:bookworm}"
archive_dir="${RUNBOX_ARCHIVE_DIR:-/var/lib/runbox/images}"
tag="${RUNBOX_IMAGE_TAG:-latest}"
bin_dir="${RUNBOX_BIN_DIR:-bin}"
images_dir=deployments/images
start=$SECONDS

fail() {
  echo "compose-images: $*" >&2
  exit 1
}

if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  fail "invalid RUNBOX_IMAGE_TAG '$tag': expected a Docker tag such as latest or v1.2"
fi
for program in runbox-api runbox-worker; do
  [ -x "$bin_dir/$program" ] || fail "$bin_dir/$program is missing; run 'make build' first"
done
docker image inspect "$base_image" >/dev/null 2>&1 \
  || fail "base image $base_image is missing; run 'make images' first"

# Builds one image from deployments/<name>/Dockerfile with a context of
# that directory plus the program from $bin_dir, so the context stays
# small without a .dockerignore file.
build_image() {
  local name=$1 program=$2 context
  context=$(mktemp -d)
  mkdir -p "$context/bin" "$context/deployments"
  cp "$bin_dir/$program" "$context/bin/$program"
  cp -r "deployments/$name" "$context/deployments/$name"
  if ! docker build -q --build-arg "BASE_IMAGE=$base_image" -t "runbox/$name:$tag" \
      -f "$context/deployments/$name/Dockerfile" "$context" >"$context/build.log" 2>&1; then
    tail -n 25 "$context/build.log" >&2
    rm -rf "$context"
    fail "build of runbox/$name:$tag failed"
  fi
  rm -rf "$context"
  echo "compose-images: built runbox/$name:$tag"
}
build_image api runbox-api
build_image worker runbox-worker

# Select the languages: every directory under deployments/images, or the
# ids in LANGUAGES.
selected=()
IFS=', ' read -r -a requested <<< "${LANGUAGES:-}"
for id in "${requested[@]}"; do
  [ -n "$id" ] || continue
  [ -f "$images_dir/$id/Dockerfile" ] \
    || fail "unknown language '$id' in LANGUAGES; the known languages are the directories of $images_dir"
  selected+=("$id")
done
if [ ${#selected[@]} -eq 0 ]; then
  for dir in "$images_dir"/*/; do
    [ -f "$dir/Dockerfile" ] && selected+=("$(basename "$dir")")
  done
fi

mkdir -p "$archive_dir"
# Several test runs may write the same directory at once. The lock keeps
# them from writing one archive together, and the rename makes each
# archive appear whole to the workers that read it.
exec 9>"$archive_dir/.lock"
flock 9
written=0
current=0
for id in "${selected[@]}"; do
  image="runbox/$id:latest"
  image_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) \
    || fail "image $image is missing; run 'make images LANGUAGES=$id' first"
  if [ -f "$archive_dir/$id.tar" ] && [ "$(cat "$archive_dir/$id.image" 2>/dev/null)" = "$image $image_id" ]; then
    current=$((current + 1))
    continue
  fi
  docker save -o "$archive_dir/.$id.tar.tmp" "$image"
  chmod 0644 "$archive_dir/.$id.tar.tmp"
  mv "$archive_dir/.$id.tar.tmp" "$archive_dir/$id.tar"
  echo "$image $image_id" > "$archive_dir/.$id.image.tmp"
  mv "$archive_dir/.$id.image.tmp" "$archive_dir/$id.image"
  echo "compose-images: wrote $archive_dir/$id.tar"
  written=$((written + 1))
done
echo "compose-images: done in $((SECONDS - start))s: $written archives written, $current up to date in $archive_dir"
