#!/usr/bin/env bash
# Build the recs_pipeline image without a Docker engine or a registry, then load the code location
# inside it. Run as root (buildah's chroot isolation and debootstrap need it):
#
#   apt-get install -y buildah debootstrap
#   scripts/build_image.sh            # or: make image
#
# 1. a Debian bookworm root made by debootstrap (Debian's python3 is 3.11, like
#    python:3.11-slim-bookworm), with this machine's extra CA certificates, becomes the base image
#    localhost/recs-base:bookworm (made once; REBUILD_BASE=1 makes it again);
# 2. uv's binary from the uv Python package (the version `make install` uses) becomes
#    localhost/recs-uv:<version>, the stand-in for ghcr.io/astral-sh/uv;
# 3. `buildah bud --isolation chroot` builds the Dockerfile with BASE_IMAGE and UV_IMAGE pointing
#    at those two (the Dockerfile's defaults stay the registry images);
# 4. `dagster definitions validate -m recs_pipeline.definitions` runs inside the image, as its
#    unprivileged user, and the image's size is printed.
#
# Variables: IMAGE (default localhost/recs-pipeline:latest), DEBIAN_MIRROR (default: the first
# Debian mirror in /etc/apt/sources.list*), IMAGE_WORK_DIR (debootstrap's folder, default
# /var/tmp/recs-image), PYTHON (with the uv package, default python3), REBUILD_BASE=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE=${IMAGE:-localhost/recs-pipeline:latest}
BASE_IMAGE=${BASE_IMAGE:-localhost/recs-base:bookworm}
WORK=${IMAGE_WORK_DIR:-/var/tmp/recs-image}
PYTHON=${PYTHON:-python3}
SUITE=bookworm
export BUILDAH_ISOLATION=chroot

say() { printf '== %s\n' "$*" >&2; }
die() {
    printf 'build_image.sh: %s\n' "$*" >&2
    exit 1
}

debian_mirror() {
    local found
    found=$(
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
            2>/dev/null |
            grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' '
    ) || true
    printf '%s\n' "${found:-http://deb.debian.org/debian}"
}

[[ $(id -u) -eq 0 ]] || die "run as root (buildah --isolation chroot and debootstrap need it)"
for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y buildah debootstrap"
done
UV_BIN=$("$PYTHON" -c 'import uv; print(uv.find_uv_bin())') ||
    die "$PYTHON has no uv package: $PYTHON -m pip install uv"
UV_VERSION=$("$UV_BIN" --version | awk '{print $2}')
UV_IMAGE=${UV_IMAGE:-localhost/recs-uv:$UV_VERSION}
MIRROR=${DEBIAN_MIRROR:-$(debian_mirror)}

started=$SECONDS

# -- 1. the base image ----------------------------------------------------------------------------
if [[ ${REBUILD_BASE:-0} == 1 ]] || ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    say "debootstrap $SUITE from $MIRROR into $WORK/rootfs"
    rm -rf "$WORK/rootfs"
    mkdir -p "$WORK"
    # tzdata: zoneinfo for the sites' time zones (python:3.11-slim carries it too).
    debootstrap --variant=minbase --include=python3,ca-certificates,tzdata \
        "$SUITE" "$WORK/rootfs" "$MIRROR"
    # This machine's own certificate authorities (a proxy's, say): uv in the build then reaches
    # PyPI the way the host does (SSL_CERT_FILE below points it at the system bundle).
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
        chroot "$WORK/rootfs" update-ca-certificates >/dev/null
    fi
    chroot "$WORK/rootfs" apt-get clean
    rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/"*.bin
    tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/rootfs.tar" .
    container=$(buildah from scratch)
    buildah add "$container" "$WORK/rootfs.tar" /
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --cmd /bin/bash "$container"
    buildah commit --rm "$container" "$BASE_IMAGE"
    rm -rf "$WORK/rootfs" "$WORK/rootfs.tar"
else
    say "base image $BASE_IMAGE is there (REBUILD_BASE=1 to make it again)"
fi

# -- 2. uv, as the image the Dockerfile copies it from --------------------------------------------
if ! buildah inspect --type image "$UV_IMAGE" >/dev/null 2>&1; then
    say "uv $UV_VERSION from $UV_BIN as $UV_IMAGE"
    container=$(buildah from scratch)
    buildah copy --chmod 0755 "$container" "$UV_BIN" /uv
    buildah config --entrypoint '["/uv"]' "$container"
    buildah commit --rm "$container" "$UV_IMAGE"
fi

# -- 3. the image ---------------------------------------------------------------------------------
say "buildah bud $IMAGE (base $BASE_IMAGE, uv $UV_IMAGE)"
build_started=$SECONDS
buildah bud --isolation chroot --pull=false --layers --force-rm \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "UV_IMAGE=$UV_IMAGE" \
    -f Dockerfile -t "$IMAGE" .
build_seconds=$((SECONDS - build_started))

# -- 4. the code location loads inside it ---------------------------------------------------------
say "dagster definitions validate inside $IMAGE"
container=$(buildah from --pull=false "$IMAGE")
trap 'buildah rm "$container" >/dev/null' EXIT
# The image's instance config (deploy/dagster.postgres.yaml) wants the DAGSTER_PG_* variables and
# a server; the check loads the code location against a throwaway instance instead.
# shellcheck disable=SC2016  # $(mktemp -d) expands inside the image
buildah run --isolation chroot "$container" -- sh -c \
    'DAGSTER_HOME=$(mktemp -d) exec dagster definitions validate -m recs_pipeline.definitions'
buildah run --isolation chroot "$container" -- recs --help >/dev/null

size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)
say "built $IMAGE ($size) in $((SECONDS - started)) s (buildah bud $build_seconds s);" \
    "the definitions load inside it"
