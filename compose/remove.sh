#!/usr/bin/env bash
# Remove the stack and wait until its services, containers, network and configs are gone.
#
#   compose/remove.sh [STACK_NAME]       (STACK_NAME, default swarmscale)
#   WAIT_SECONDS (120): how long to wait
set -euo pipefail

stack=${1:-${STACK_NAME:-swarmscale}}
wait_seconds=${WAIT_SECONDS:-120}
label="label=com.docker.stack.namespace=$stack"

log() { printf '[remove %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

leftovers() {
  docker service ls -q --filter "$label"
  docker ps -q --filter "$label"
  docker network ls -q --filter "$label"
  docker config ls -q --filter "$label"
}

if [ -z "$(leftovers)" ]; then
  log "no stack $stack"
  exit 0
fi
log "docker stack rm $stack"
docker stack rm "$stack" >&2
started=$SECONDS
while [ -n "$(leftovers)" ]; do
  if ((SECONDS - started > wait_seconds)); then
    log "error: stack $stack still has these after $wait_seconds s:"
    leftovers >&2
    exit 1
  fi
  # A network goes only once its last container has; ask again when it lingers.
  if ((SECONDS - started > 20)) && [ -z "$(docker ps -q --filter "$label")" ]; then
    docker network ls -q --filter "$label" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  sleep 1
done
log "stack $stack removed in $((SECONDS - started)) s"
