#!/usr/bin/env bash
# A Debian 12 (bookworm) base image built from Debian's own packages with debootstrap, for machines
# that reach a Debian mirror but no container registry (docs/docker.md). It has Python 3.11 (with
# venv and pip), libgomp1 (PyTorch's and scikit-learn's OpenMP), CA certificates and useradd.
#   docker/base-image.sh [IMAGE]        default IMAGE: trading-engine-base:bookworm
# Environment: DEBIAN_MIRROR (default: the mirror apt uses here, else deb.debian.org), DOCKER.
set -euo pipefail
image=${1:-trading-engine-base:bookworm}
docker=${DOCKER:-docker}
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
if "$docker" image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror into $root"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,libgomp1,ca-certificates,passwd \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - "$image"
echo "base image $image built"
