#!/usr/bin/env bash
# Builds the Debian base image every language image starts from.
#
# A registry is tried first (docker pull debian:bookworm-slim). Where none
# answers, the image is made from Debian packages with debootstrap and
# `docker import`. The image carries the label runbox.content, a hash of this
# script and the mirror, so an unchanged base is not built twice.
set -euo pipefail

image="${RUNBOX_BASE_IMAGE:-runbox/base:bookworm}"
suite=bookworm

# Prints the first Debian mirror named in the apt sources of this machine.
debian_mirror() {
  local mirror
  mirror=$(grep -hoE '^(URIs:|deb)[[:space:]]+[^ ]+' \
      /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '{print $2}' | grep -v security | head -n 1 || true)
  echo "${mirror:-http://deb.debian.org/debian}"
}

mirror="${RUNBOX_DEBIAN_MIRROR:-$(debian_mirror)}"
security_mirror="${RUNBOX_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
content=$( (cat "$0"; echo "$mirror $security_mirror") | sha256sum | cut -c1-16)

current=$(docker image inspect -f '{{index .Config.Labels "runbox.content"}}' \
  "$image" 2>/dev/null || true)
if [ "$current" = "$content" ]; then
  echo "base: $image is up to date ($content)"
  exit 0
fi

start=$(date +%s)
# The Dockerfile below adds the sandbox user and the label to whichever root
# file system was found.
if timeout 20 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
  echo "base: pulled debian:bookworm-slim"
  root_image=debian:bookworm-slim
else
  echo "base: no registry answered; running debootstrap from $mirror"
  if ! command -v debootstrap >/dev/null; then
    apt-get install -y -q debootstrap >/dev/null
  fi
  dir=$(mktemp -d /var/tmp/runbox-rootfs.XXXXXX)
  trap 'rm -rf "$dir"' EXIT
  debootstrap --variant=minbase "$suite" "$dir" "$mirror" >/dev/null
  # Keep the apt sources pointing at the same mirror inside the image, with
  # the point-release and security updates that debian:bookworm-slim has too.
  cat > "$dir/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SOURCES
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  root_image=runbox/rootfs:$suite
  tar -C "$dir" -c . | docker import - "$root_image" >/dev/null
fi

docker build -q -t "$image" --label "runbox.content=$content" - >/dev/null <<EOF
FROM $root_image
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
# This apt configuration deletes downloaded packages after each install, so
# that no image layer keeps them, and turns off recommended packages.
RUN printf '%s\\n' \\
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \\
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \\
      'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' \\
      'APT::Install-Recommends "false";' \\
      > /etc/apt/apt.conf.d/90runbox
# Apply the point-release and security updates published since the suite
# was bootstrapped.
RUN apt-get update && apt-get upgrade -y && rm -rf /var/lib/apt/lists/*
# The sandbox runs as this unprivileged user; its home is the work directory.
RUN groupadd --gid 10001 runner \\
 && useradd --uid 10001 --gid 10001 --home-dir /box --no-create-home \\
      --shell /bin/sh runner \\
 && mkdir -p /box && chown runner:runner /box
EOF
echo "base: built $image ($content) in $(( $(date +%s) - start ))s"
