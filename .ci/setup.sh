#!/usr/bin/env bash
# Install and start everything the tests need, from a fresh machine or over an earlier run:
# Debian packages, the virtual environment, dockerd, a single-node Swarm, the test images and
# the images of the stack in compose/.
# Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

packages=()
command -v dockerd >/dev/null || packages+=(docker.io)
command -v docker >/dev/null || packages+=(docker.io)
[ -x /usr/bin/prometheus ] || packages+=(prometheus)
dpkg -s busybox-static >/dev/null 2>&1 || packages+=(busybox-static)
[ -x /usr/sbin/haproxy ] || packages+=(haproxy)  # the Docker socket proxy's test
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v curl >/dev/null || packages+=(curl)
command -v chromium >/dev/null || packages+=(chromium)  # the report's browser test
# The multi-node Swarm of tests/cluster: a bridge, network namespaces, veths (iproute2), the
# forward rule (iptables), nsenter, unshare and findmnt (util-linux).
command -v ip >/dev/null || packages+=(iproute2)
command -v iptables >/dev/null || packages+=(iptables)
{ command -v nsenter && command -v unshare && command -v findmnt; } >/dev/null || packages+=(util-linux)
if ((${#packages[@]})); then
  log "installing Debian packages: ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating the virtual environment .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import autoscaler, pytest, mypy, ruff, importlinter' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing the project and its test tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' >.venv/install.log 2>&1 \
    || { cat .venv/install.log >&2; exit 1; }
  touch .venv/.installed
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/autoscaler-dockerd.log)"
  nohup dockerd >/var/log/autoscaler-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start"; tail -20 /var/log/autoscaler-dockerd.log >&2; exit 1; }
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" != active ]; then
  if [ "$state" != inactive ]; then
    log "Swarm is '$state': leaving it"
    docker swarm leave --force >/dev/null 2>&1 || true
  fi
  log "initialising a single-node Swarm"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
for _ in $(seq 30); do
  [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] && break; sleep 1
done

for stack in $(docker stack ls --format '{{.Name}}' | grep -E '^aste2e[0-9a-f]+$' || true); do
  log "removing the stack $stack left by an earlier test run"
  bash compose/remove.sh "$stack" >/dev/null 2>&1 || true
done
leftovers=$(docker service ls -q --filter label=autoscaler.test=1)
if [ -n "$leftovers" ]; then
  log "removing services left by an earlier test run"
  # shellcheck disable=SC2086
  docker service rm $leftovers >/dev/null
fi

# A tiny image for the services the tests create: busybox on scratch (nothing can be pulled).
image=autoscaler-test/busybox:1
if ! docker image inspect "$image" >/dev/null 2>&1; then
  log "building $image"
  root=$(mktemp -d)
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  for tool in sh sleep httpd; do ln -s busybox "$root/bin/$tool"; done
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/busybox","sleep","86400"]' - "$image" >/dev/null
  rm -rf "$root"
fi
# The images of the stack in compose/ (the end-to-end tests deploy it): a debootstrap base
# once (about two minutes), then only what changed.
bash compose/build-images.sh

log "ready: $(docker version --format 'engine {{.Server.Version}}'), Swarm active, $image"
