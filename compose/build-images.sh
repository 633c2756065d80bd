#!/usr/bin/env bash
# Build every image the stack needs, locally, with no registry:
#   1. a Debian bookworm base image made with debootstrap (once; skipped when it exists),
#   2. wheels of the project and all its dependencies (again only when the source changed),
#   3. the agent, demo, Prometheus and socket proxy images FROM that base.
# Idempotent: a second run with nothing changed takes a few seconds (Docker's layer cache).
#
# Needs root, a Docker engine, the project's .venv (python 3.11) and the Debian packages
# debootstrap, prometheus and haproxy (installed here when missing).
#
# Environment (all optional):
#   BASE_IMAGE        the base image's name        (swarm-autoscaler/base:bookworm)
#   IMAGE_TAG         tag of the images built      (local)
#   DEBIAN_MIRROR     mirror for debootstrap       (http://deb.debian.org/debian)
#   REBUILD_BASE=1    make the base image again even when it exists
set -euo pipefail

compose=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$compose")
build="$compose/build"
base=${BASE_IMAGE:-swarm-autoscaler/base:bookworm}
tag=${IMAGE_TAG:-local}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python="$repo/.venv/bin/python"

log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap needs it)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info)"
[ -x "$python" ] || die "no virtual environment at $repo/.venv (python3 -m venv .venv && .venv/bin/pip install -e .)"

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 1. the base image --------------------------------------------------------------------
# python3-minimal and python3-venv give python3.11 and `python3 -m venv` (with its bundled
# pip, so no system pip install is needed: Debian marks its python "externally managed");
# python3-prometheus-client is all the demo needs.
mkdir -p "$build"
if [ -n "${REBUILD_BASE:-}" ] || ! docker image inspect "$base" >/dev/null 2>&1; then
  started=$SECONDS
  rootfs=$(mktemp -d /var/tmp/swarm-autoscaler-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm into $rootfs (about a minute; mirror $mirror)"
  debootstrap --variant=minbase \
    --include=python3-minimal,python3-venv,python3-pip,python3-prometheus-client,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$build/debootstrap.log" 2>&1 \
    || { tail -20 "$build/debootstrap.log" >&2; die "debootstrap failed (log: $build/debootstrap.log)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  log "importing the root file system as $base"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "base image $base made in $((SECONDS - started)) s"
else
  log "base image $base exists (REBUILD_BASE=1 makes it again)"
fi

# The wheels are built by the host's Python; the image's must be the same minor version.
want=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have=$(docker run --rm --network none "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$want" = "$have" ] || die "the base image has python $have but .venv has $want: the wheels would not match"

# --- 2. wheels of the project and its dependencies ------------------------------------------
# Rebuilt only when the project's source changed (a hash of pyproject.toml and the package).
mkdir -p "$build/wheels"
source_hash=$(cd "$repo" && find pyproject.toml autoscaler -type f \( -name '*.py' -o -name '*.toml' -o -name '*.typed' \) \
  -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$build/wheels/.source-hash" 2>/dev/null)" != "$source_hash" ]; then
  started=$SECONDS
  log "building wheels of the project and its dependencies into $build/wheels"
  rm -f "$build"/wheels/swarm_autoscaler-*.whl
  # From a copy of the source: setuptools leaves build/ and *.egg-info in the folder it builds.
  rm -rf "$build/src" && mkdir -p "$build/src"
  tar -C "$repo" --exclude=__pycache__ -c pyproject.toml README.md autoscaler | tar -C "$build/src" -x
  "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$build/wheels" "$build/src" \
    >"$build/pip-wheel.log" 2>&1 || { tail -20 "$build/pip-wheel.log" >&2; die "pip wheel failed"; }
  echo "$source_hash" >"$build/wheels/.source-hash"
  log "wheels built in $((SECONDS - started)) s: $(find "$build/wheels" -name "*.whl" | wc -l) wheels"
else
  log "wheels are up to date with the source ($source_hash)"
fi

# --- 3. the images ------------------------------------------------------------------------
# The agent and demo images use compose/ as their build context (compose/.dockerignore lets
# only build/wheels and images/demo in); Prometheus's context is a folder holding its binary;
# the socket proxy's holds Debian's haproxy, the libraries it links (its Dockerfile keeps
# those the base lacks) and its config.
mkdir -p "$build/prometheus"
cmp -s /usr/bin/prometheus "$build/prometheus/prometheus" \
  || cp /usr/bin/prometheus "$build/prometheus/prometheus"
rm -rf "$build/socket-proxy" && mkdir -p "$build/socket-proxy/lib"
cp /usr/sbin/haproxy "$compose/socket-proxy/haproxy.cfg" "$build/socket-proxy/"
ldd /usr/sbin/haproxy | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
  | xargs -r cp -L -t "$build/socket-proxy/lib/"

build_image() {  # NAME CONTEXT [DOCKERFILE]
  local name=$1 context=$2 dockerfile=${3:-$compose/images/$1/Dockerfile} started=$SECONDS
  log "docker build swarm-autoscaler/$name:$tag"
  docker build --quiet --build-arg "BASE=$base" -t "swarm-autoscaler/$name:$tag" \
    -f "$dockerfile" "$context" >"$build/docker-build-$name.log" 2>&1 \
    || { tail -30 "$build/docker-build-$name.log" >&2; die "docker build of $name failed"; }
  log "swarm-autoscaler/$name:$tag ready in $((SECONDS - started)) s"
}
build_image agent "$compose"
build_image demo "$compose"
build_image prometheus "$build/prometheus"
build_image socket-proxy "$build/socket-proxy" "$compose/socket-proxy/Dockerfile"
