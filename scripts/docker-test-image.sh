#!/usr/bin/env bash
# Builds the Docker image the integration tests run, without any registry:
# a rootfs holding only a static busybox plus applet symlinks, imported with `docker import`.
#
# Usage: scripts/docker-test-image.sh [IMAGE]   (default warden-test/busybox:latest)
# Idempotent: exits 0 at once if the image already exists.
# Needs: a running dockerd and a static busybox (Debian: apt-get install busybox-static).
set -euo pipefail

image="${1:-warden-test/busybox:latest}"

if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi

busybox="${BUSYBOX:-/bin/busybox}"
if [[ ! -x "$busybox" ]]; then
    echo "docker-test-image: $busybox not found; install busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
# A dynamically linked busybox would need its libraries inside the image.
if ldd "$busybox" >/dev/null 2>&1; then
    echo "docker-test-image: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"

# Link every applet this busybox has (sh, sleep, cat, ...).
for applet in $("$busybox" --list); do
    if [[ "$applet" != "busybox" && ! -e "$rootfs/bin/$applet" ]]; then
        ln -s busybox "$rootfs/bin/$applet"
    fi
done

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    - "$image" >/dev/null

echo "docker-test-image: built $image"
