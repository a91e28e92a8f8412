#!/usr/bin/env bash
# A Debian base image made from Debian's archive, for machines that reach no container registry.
#
#   tools/container/base.sh IMAGE [SUITE] [MIRROR]     e.g. localhost/asyncfs-base:bookworm
#
# debootstrap's minimal variant (what docker.io/library/debian is made of, less its clean-ups),
# imported into podman's store, where it stays for the next build. About a minute.
set -euo pipefail
image=$1 suite=${2:-bookworm} mirror=${3:-http://deb.debian.org/debian}
# Under /var/tmp, on a disk: debootstrap makes device nodes and runs programs, which a tmpfs /tmp may forbid.
work=$(mktemp -d /var/tmp/asyncfs-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree=$work/tree   # the image's file system, as debootstrap makes it
if ! debootstrap --variant=minbase "$suite" "$tree" "$mirror" >"$work/log" 2>&1; then
    tail -20 "$work/log" >&2
    echo "base: debootstrap $suite from $mirror failed (the end of its log is above)" >&2
    exit 1
fi
# The downloaded packages and the package lists: the image's first apt-get update fetches lists anew.
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
tar -C "$tree" -c . | podman import -q --change 'CMD ["bash"]' - "$image" >/dev/null
