#!/usr/bin/env bash
# base-image.sh [IMAGE]: make a local stand-in for python:3.11-slim where no container registry is
# reachable: Debian bookworm (minbase) with python3 (3.11), python3-venv and ca-certificates, built with
# debootstrap from the Debian mirror and imported into podman's image store. About a minute.
# Nothing happens when IMAGE already exists (the smoke test keeps it as a cache between runs).
#
# Like python:3.11-slim it has no compiler, no curl, no apt lists and no package caches.
set -euo pipefail

IMAGE=${1:-localhost/debian-py311:bookworm}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if podman image exists "$IMAGE"; then
    echo "base image $IMAGE: present (cached)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image.sh: debootstrap is not installed" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/debootstrap-py311.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base image $IMAGE: debootstrap $SUITE from $MIRROR (about a minute)"
start=$SECONDS
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1; then
    tail -20 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    echo "base-image.sh: debootstrap failed (is the Debian mirror reachable?)" >&2
    exit 1
fi
rm -f "$rootfs.log"

# Trim what a slim image leaves out: downloaded .debs, apt lists, docs (copyright files kept), man
# pages, locales other than the C locale.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
find "$rootfs"/usr/share/doc -type f ! -name copyright -delete
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

tar -C "$rootfs" -c . | podman import --quiet \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "base image $IMAGE: imported in $((SECONDS - start)) s," \
    "$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"
