#!/usr/bin/env bash
# Deploy the stack on this Swarm with locally built images, then wait until every service
# runs the images just deployed (the agent's task only counts once its health check passed),
# Prometheus answers at 127.0.0.1:$PROMETHEUS_PORT and the load generator at
# 127.0.0.1:$LOADGEN_PORT.
#
#   compose/deploy.sh [STACK_NAME]
#
# Environment (all optional):
#   STACK_NAME            the stack (swarmscale); also the first argument
#   POLICIES_DIR          the policies folder, bind-mounted into the agent (compose/policies)
#   DOCKER_GID            group of /var/run/docker.sock on the managers (that of the local
#                         socket the docker CLI talks to; needed when the CLI's engine is
#                         tcp:// or ssh://, by DOCKER_HOST or a context)
#   PROMETHEUS_PORT       host port of Prometheus (9090)
#   LOADGEN_PORT          host port of the load generator's control endpoint (8089)
#                         (both published on every address of the node, not only 127.0.0.1,
#                         and unauthenticated: see compose/README.md)
#   AUTOSCALER_INTERVAL   the agent's tick interval (15s)
#   AUTOSCALER_LEASE      the node label of the agents' lease (autoscaler.lease): a second
#                         stack beside another one sets its own, or its agent never acts
#   LOAD_RATE             the load generator's rate at start, requests/s (0)
#   SOCKET_PROXY=1        deploy stack.socket-proxy.yml too: the agent has no Docker socket and
#                         reaches the engine through haproxy, which allows only its calls
#   SKIP_BUILD=1          do not run build-images.sh (the images must exist)
#   AUTOSCALER_IMAGE, DEMO_IMAGE, PROMETHEUS_IMAGE   deploy these images as they are (by
#                         default, the local builds under a tag naming their ID)
#   WAIT_SECONDS          how long to wait for the stack (180)
set -euo pipefail

compose=$(cd "$(dirname "$0")" && pwd)
export STACK_NAME=${1:-${STACK_NAME:-swarmscale}}
export PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
export LOADGEN_PORT=${LOADGEN_PORT:-8089}
wait_seconds=${WAIT_SECONDS:-180}
tag=${IMAGE_TAG:-local}

log() { printf '[deploy %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -d "${POLICIES_DIR:-$compose/policies}" ] || die "no policies folder ${POLICIES_DIR:-$compose/policies}"
POLICIES_DIR=$(cd "${POLICIES_DIR:-$compose/policies}" && pwd)
export POLICIES_DIR

if [ -z "${SKIP_BUILD:-}" ]; then
  "$compose/build-images.sh"
fi

# The agent (or the socket proxy) runs in the group of the managers' Docker socket, so it can
# talk to the engine: DOCKER_GID as given, else the group of the socket this script talks to
# (as the CLI picks the engine: DOCKER_HOST, DOCKER_CONTEXT, the current context). An engine
# that is no local socket (tcp://, ssh://) says nothing of the managers' group.
if [ -z "${DOCKER_GID:-}" ]; then
  engine=$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null) || engine=
  engine=${engine:-${DOCKER_HOST:-unix:///var/run/docker.sock}}
  case "$engine" in
    unix://*) DOCKER_GID=$(stat -c %g "${engine#unix://}") \
                || die "cannot read the group of ${engine#unix://}: set DOCKER_GID" ;;
    *) die "the engine is $engine, no local socket: set DOCKER_GID to the group of /var/run/docker.sock on the managers (stat -c %g there)" ;;
  esac
fi
export DOCKER_GID

# Swarm compares image names, not contents: a rebuilt image under the same tag would not be
# rolled out. Each image is deployed under a tag naming its ID, so a rebuild is. An image
# variable set by the caller is deployed as it is: on a Swarm of several nodes the images
# must be on the nodes under that name (pushed to a registry, or loaded by the caller).
image_for() {  # NAME -> a tag naming the local image's ID
  local local_tag="swarm-autoscaler/$1:$tag" id
  id=$(docker image inspect --format '{{.Id}}' "$local_tag" 2>/dev/null) \
    || die "no image $local_tag (run compose/build-images.sh)"
  id=${id#sha256:}
  docker tag "$local_tag" "swarm-autoscaler/$1:$tag-${id:0:12}"
  echo "swarm-autoscaler/$1:$tag-${id:0:12}"
}
AUTOSCALER_IMAGE=${AUTOSCALER_IMAGE:-$(image_for agent)}
DEMO_IMAGE=${DEMO_IMAGE:-$(image_for demo)}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-$(image_for prometheus)}
export AUTOSCALER_IMAGE DEMO_IMAGE PROMETHEUS_IMAGE

files=(-c "$compose/stack.yml")
SOCKET_PROXY_IMAGE=
if [ -n "${SOCKET_PROXY:-}" ]; then
  SOCKET_PROXY_IMAGE=$(image_for socket-proxy)
  SOCKET_PROXY_CONFIG_VERSION=$(sha256sum "$compose/socket-proxy/haproxy.cfg" | cut -c1-12)
  export SOCKET_PROXY_IMAGE SOCKET_PROXY_CONFIG_VERSION
  files+=(-c "$compose/stack.socket-proxy.yml")
  # The override replaces the agent's socket mount by its target; an older CLI (Debian's
  # 20.10, which has no `docker stack config`) appends it instead and the engine refuses the
  # duplicate mount point.
  merged=$(docker stack config "${files[@]}" 2>&1) \
    || die "SOCKET_PROXY=1 needs a docker CLI that merges compose files' mounts by target, one with 'docker stack config': ${merged%%$'\n'*}"
fi

# A Swarm config never changes in place: name it after its content.
PROMETHEUS_CONFIG_VERSION=$(sha256sum "$compose/prometheus.yml" | cut -c1-12)
export PROMETHEUS_CONFIG_VERSION

proxy_note=${SOCKET_PROXY_IMAGE:+, Docker socket proxy $SOCKET_PROXY_IMAGE}
started=$SECONDS
log "docker stack deploy $STACK_NAME (agent $AUTOSCALER_IMAGE, policies $POLICIES_DIR," \
  "Prometheus on :$PROMETHEUS_PORT and load generator on :$LOADGEN_PORT of every address of the node$proxy_note)"
docker stack deploy --resolve-image never --prune "${files[@]}" "$STACK_NAME" >&2
if [ -n "$SOCKET_PROXY_IMAGE" ]; then
  mounts=$(docker service inspect --format \
    '{{range .Spec.TaskTemplate.ContainerSpec.Mounts}}{{.Type}} {{.Target}}{{println}}{{end}}' \
    "${STACK_NAME}_agent")
  grep -qx 'bind /var/run/docker.sock' <<<"$mounts" \
    && die "the agent still has the Docker socket mounted; mounts: $mounts"
fi

show_tasks() {
  docker stack ps --no-trunc --format '{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}' \
    "$STACK_NAME" >&2 || true
}

# A service has converged when it has as many tasks meant to run as its spec says, each
# running the image deployed now (after an update, the old task may still be the one running).
# An agent's task counts as running only once its health check has passed.
converged() {  # SERVICE IMAGE
  local want states
  want=$(docker service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' "$1" 2>/dev/null) \
    || return 1
  states=$(docker service ps --filter desired-state=running --format '{{.Image}} {{.CurrentState}}' "$1" \
    2>/dev/null | awk '{print $1, $2}' | sed 's/@[^ ]*//')
  [ "$(grep -cxF "$2 Running" <<<"$states")" = "$want" ] \
    && [ "$(grep -c . <<<"$states")" = "$want" ]
}

wait_for() {  # WHAT COMMAND...
  local what=$1
  shift
  until "$@"; do
    if ((SECONDS - started > wait_seconds)); then
      show_tasks
      docker service logs --tail 30 "${STACK_NAME}_agent" >&2 || true
      die "$what not ready within $wait_seconds s"
    fi
    sleep 1
  done
  log "$what ready after $((SECONDS - started)) s"
}

answers() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

log "waiting for the agent's task to run and pass its health check"
wait_for "agent" converged "${STACK_NAME}_agent" "$AUTOSCALER_IMAGE"
wait_for "prometheus" converged "${STACK_NAME}_prometheus" "$PROMETHEUS_IMAGE"
if [ -n "$SOCKET_PROXY_IMAGE" ]; then
  wait_for "socket proxy" converged "${STACK_NAME}_socket-proxy" "$SOCKET_PROXY_IMAGE"
fi
wait_for "Prometheus at 127.0.0.1:$PROMETHEUS_PORT" answers "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
wait_for "web" converged "${STACK_NAME}_web" "$DEMO_IMAGE"
wait_for "loadgen" converged "${STACK_NAME}_loadgen" "$DEMO_IMAGE"
wait_for "load generator at 127.0.0.1:$LOADGEN_PORT" answers "http://127.0.0.1:$LOADGEN_PORT/rate"
log "stack $STACK_NAME up in $((SECONDS - started)) s"

# Drop the ID tags that no service uses any more (an image still in use keeps its tag).
keep=$(printf '%s\n' "$AUTOSCALER_IMAGE" "$DEMO_IMAGE" "$PROMETHEUS_IMAGE" "$SOCKET_PROXY_IMAGE"
       docker service ls --format '{{.Image}}' | sed 's/@.*//')
for image in $(docker image ls --format '{{.Repository}}:{{.Tag}}' 'swarm-autoscaler/*' \
               | grep -E ":$tag-[0-9a-f]{12}\$"); do
  grep -qxF "$image" <<<"$keep" || docker rmi "$image" >/dev/null 2>&1 || true
done

proxy_calls=
if [ -n "$SOCKET_PROXY_IMAGE" ]; then
  proxy_calls=$'\n'"  Docker calls    docker service logs -f ${STACK_NAME}_socket-proxy"
fi
cat >&2 <<EOF

  Prometheus      http://127.0.0.1:$PROMETHEUS_PORT
  load, now       curl 127.0.0.1:$LOADGEN_PORT/rate
  load, change    curl -X PUT --data 100 127.0.0.1:$LOADGEN_PORT/rate
  decisions       docker service logs -f ${STACK_NAME}_agent$proxy_calls
  replicas        docker service ls --filter label=com.docker.stack.namespace=$STACK_NAME
  remove          $compose/remove.sh $STACK_NAME
EOF
