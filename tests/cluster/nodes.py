"""A Swarm of several nodes on this one machine: one `dockerd` per node, each in a network
namespace and a mount namespace of its own, the nodes joined through a host bridge.

What one node N (1, 2, ...) is made of, all named after `astest-nN`:

    br-astest            the host bridge, 10.199.0.1/24, shared by the nodes; an iptables rule
                         (chain DOCKER-USER: the host engine's FORWARD policy is DROP) lets
                         traffic between them through, and only between them
    astest-nN            the network namespace (`ip netns`): `eth0` at 10.199.0.(N+1)/24 on a
                         veth whose host end `astest-nNh` is on the bridge; no default route, so
                         the node reaches nothing but the bridge's subnet
    /var/lib/astest-nN   its data root, a tmpfs (images load twice as fast as on the disk);
                         the tests' other folders the nodes read are /var/lib/astest-* too
    /run/astest-nN       its /run: the node's dockerd runs in a mount namespace of its own in
                         which this folder is bind-mounted on /run, so its socket,
                         /run/astest-nN/docker.sock on the host, is /var/run/docker.sock on the
                         node. A task that binds /var/run/docker.sock reaches its own node's
                         engine, as on a real node, never the host's.
    cgroup astest-nN     the parent cgroup of the node's containers

Every process of a node (dockerd, its containerd, the shims) has ASTEST_NODE=astest-nN in
its environment, and every container process is in a cgroup under astest-nN: that is how
`clean()` finds them, even those an aborted run left behind. `ip netns exec` cannot start
the daemons (it remounts /sys and hides the cgroups): `nsenter --net=...` does.

Nothing here sends traffic anywhere but to 10.199.0.0/24, inside namespaces made here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

PREFIX = "astest-n"
BRIDGE = "br-astest"
SUBNET = "10.199.0"
MARKER = "ASTEST_NODE"
FORWARD_RULE = ("-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
DOCKER_API = "1.41"
TOOLS = ("ip", "iptables", "nsenter", "unshare", "mount", "umount", "findmnt", "dockerd",
         "docker")

# Run inside the node's new mount and UTS namespaces, in its network namespace, then exec'd
# into dockerd. The copies of the host's mounts that pin things which are not the node's go:
# the host engine's container file systems (overlay), its data root, and the handles of
# network namespaces (nsfs); then the node's own folder becomes /run.
NODE_INIT = r"""
set -eu
hostname "$ASTEST_NODE"
findmnt -rn -t overlay,nsfs -o TARGET | sort -r | while read -r target; do
  umount -l "$target" 2>/dev/null || true
done
if mountpoint -q /var/lib/docker; then umount -l /var/lib/docker; fi
mount --bind "/run/$ASTEST_NODE" /run
exec "$@"
"""


def _answers(node: Node) -> bool:
    """Whether the node's dockerd answers `docker version` within 10 s. A dockerd that
    restarts after a SIGKILL can take its socket before it serves, and the probe then waits:
    that is not an answer yet, and the launch's own deadline decides."""
    try:
        return node.docker("version", check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


class ClusterError(AssertionError):
    """The multi-node Swarm could not be built, or a node misbehaved."""


def run(*args: str, timeout: float = 120, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(args)}` failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done


@dataclass(frozen=True)
class NodeSpec:
    index: int
    role: str
    """manager or worker"""
    images: tuple[str, ...]
    """The images to load into the node: only those its tasks need."""
    labels: tuple[tuple[str, str], ...] = ()
    """Swarm node labels to set once it has joined."""


@dataclass
class Node:
    spec: NodeSpec
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.spec.index}"

    @property
    def role(self) -> str:
        return self.spec.role

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.spec.index + 1}"

    @property
    def run_dir(self) -> Path:
        return Path("/run") / self.name

    @property
    def data_root(self) -> Path:
        return Path("/var/lib") / self.name

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        """DOCKER_HOST for this node's engine."""
        return f"unix://{self.socket}"

    @property
    def netns(self) -> Path:
        return Path("/run/netns") / self.name

    def client(self, timeout: int = 30) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, version=DOCKER_API, timeout=timeout)

    def docker(self, *args: str, timeout: float = 120, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        return run("docker", "--host", self.host, *args, timeout=timeout, check=check)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Cluster:
    nodes: list[Node]
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)
    _forward_chain: str = ""

    def node(self, index: int) -> Node:
        return self.nodes[index - 1]

    @property
    def managers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "manager"]

    def by_id(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ClusterError(f"no node of the test Swarm has the ID {node_id}")

    def manager_alive(self, *, besides: Node | None = None) -> Node:
        for node in self.managers:
            if node is not besides and node.alive():
                return node
        raise ClusterError("no manager of the test Swarm is running")

    # --- building ---------------------------------------------------------------------

    def start(self, images: dict[str, str]) -> None:
        """Build the whole Swarm: network, daemons, images (`images`: short name -> image),
        Swarm. Each step's seconds go to `timings`."""
        began = time.monotonic()
        check_capabilities(images.values())
        clean()
        self.timings["clean leftovers"] = time.monotonic() - began
        step = time.monotonic()
        self._network()
        self.timings["network"] = time.monotonic() - step
        step = time.monotonic()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(self._start_daemon, self.nodes))
        self.timings["daemons"] = time.monotonic() - step
        step = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            loading = pool.submit(self._load_images, images)
            self._form_swarm()
            self.timings["swarm formed"] = time.monotonic() - step
            loading.result()
        self.timings["images loaded (while the Swarm formed)"] = time.monotonic() - step
        self.timings["set-up"] = time.monotonic() - began

    def _network(self) -> None:
        ip = ("ip",)
        run(*ip, "link", "add", BRIDGE, "type", "bridge")
        run(*ip, "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        run(*ip, "link", "set", BRIDGE, "up")
        for node in self.nodes:
            run(*ip, "netns", "add", node.name)
            run(*ip, "link", "add", f"{node.name}h", "type", "veth", "peer", "name", "eth0",
                "netns", node.name)
            run(*ip, "link", "set", f"{node.name}h", "master", BRIDGE, "up")
            inside = ("ip", "-n", node.name)
            run(*inside, "addr", "add", f"{node.address}/24", "dev", "eth0")
            run(*inside, "link", "set", "eth0", "up")
            run(*inside, "link", "set", "lo", "up")
        chain = "DOCKER-USER" if run("iptables", "-S", "DOCKER-USER",
                                     check=False).returncode == 0 else "FORWARD"
        run("iptables", "-I", chain, *FORWARD_RULE)
        self._forward_chain = chain

    def _start_daemon(self, node: Node) -> None:
        node.run_dir.mkdir(parents=True, exist_ok=True)
        node.data_root.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(node.data_root):
            run("mount", "-t", "tmpfs", "-o", "mode=0711,size=6g", node.name,
                str(node.data_root))
        self.launch(node)

    def launch(self, node: Node, timeout: float = 60) -> None:
        """Start the node's dockerd (again, after a kill: same data root, same Swarm
        membership) and wait until its API answers."""
        node.socket.unlink(missing_ok=True)
        command = [
            "nsenter", f"--net={node.netns}", "--",
            "unshare", "--mount", "--uts", "--propagation", "private", "--",
            "sh", "-c", NODE_INIT, "node-init",
            "dockerd", "--data-root", str(node.data_root), "--exec-root", "/run/docker",
            "--host", "unix:///run/docker.sock", "--pidfile", "/run/docker.pid",
            "--bridge", "none", "--iptables=false", "--ip-forward=false",
            "--cgroup-parent", node.name,
        ]
        with node.log_file.open("ab") as log:
            node.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, MARKER: node.name}, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if not node.alive():
                raise ClusterError(f"dockerd of {node.name} exited:\n{node.log_tail()}")
            if node.socket.exists() and _answers(node):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"dockerd of {node.name} did not answer within "
                                   f"{timeout:.0f} s:\n{node.log_tail()}")
            time.sleep(0.1)

    def _load_images(self, images: dict[str, str]) -> None:
        """Each image saved once from the host's engine and streamed into every node that
        needs it (`docker save | docker load`, one reader feeding several loads)."""
        targets: dict[str, list[Node]] = {}
        for node in self.nodes:
            for short in node.spec.images:
                targets.setdefault(images[short], []).append(node)
        with ThreadPoolExecutor(len(targets)) as pool:
            list(pool.map(lambda item: _stream_image(*item), targets.items()))

    def _form_swarm(self) -> None:
        first, *others = self.nodes
        first.docker("swarm", "init", "--advertise-addr", first.address,
                     "--listen-addr", f"{first.address}:2377")
        tokens = {role: first.docker("swarm", "join-token", "-q", role).stdout.strip()
                  for role in ("manager", "worker")}

        def join(node: Node) -> None:
            node.docker("swarm", "join", "--token", tokens[node.role], "--advertise-addr",
                        node.address, "--listen-addr", f"{node.address}:2377",
                        f"{first.address}:2377", timeout=120)

        # Managers one after the other (each changes the Raft membership), workers meanwhile.
        workers = [n for n in others if n.role == "worker"]
        with ThreadPoolExecutor(max(1, len(workers))) as pool:
            joined = [pool.submit(join, n) for n in workers]
            for node in others:
                if node.role == "manager":
                    join(node)
            for future in joined:
                future.result()
        for node in self.nodes:
            node.node_id = node.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
            for key, value in node.spec.labels:
                first.docker("node", "update", "--label-add", f"{key}={value}", node.node_id)
        wait_until(f"{len(self.nodes)} nodes ready", lambda: self.ready_nodes() == len(self.nodes),
                   timeout=60)

    def ready_nodes(self, via: Node | None = None) -> int:
        manager = via or self.manager_alive()
        lines = manager.docker("node", "ls", "--format", "{{.Status}}").stdout.split()
        return sum(1 for status in lines if status == "Ready")

    # --- breaking ---------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL the node's dockerd: no graceful stop. Its containerd goes with it (it
        dies with its parent); the shims and the containers keep running, cut off from
        any engine, as after a crash of dockerd on a real node."""
        if node.process is None:
            raise ClusterError(f"{node.name} was never started")
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=30)

    def destroy(self) -> None:
        for node in self.nodes:
            if node.alive() and node.process is not None:
                node.process.kill()
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=10)
        clean()


def _stream_image(image: str, nodes: Sequence[Node]) -> None:
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    loads = [subprocess.Popen(["docker", "--host", n.host, "load", "--quiet"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for n in nodes]
    assert save.stdout is not None
    try:
        while chunk := save.stdout.read(1 << 20):
            for load in loads:
                assert load.stdin is not None
                load.stdin.write(chunk)
    finally:
        for load in loads:
            assert load.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                load.stdin.close()
    problems = []
    if save.wait(timeout=60) != 0:
        problems.append(f"docker save {image}: {save.stderr.read().decode()[-500:]}"
                        if save.stderr else f"docker save {image} failed")
    for node, load in zip(nodes, loads, strict=True):
        assert load.stderr is not None
        error = load.stderr.read().decode(errors="replace")
        if load.wait(timeout=300) != 0:
            problems.append(f"docker load of {image} into {node.name}: {error[-500:]}")
    if problems:
        raise ClusterError("; ".join(problems))


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25
               ) -> Any:
    """`check()`'s first true value, polled every `interval` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- what the machine must offer ------------------------------------------------------------


def check_capabilities(images: Iterable[str]) -> None:
    """Fail loudly, with what is missing, before touching anything."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root (namespaces, mounts, iptables need it)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        problems.append(f"missing commands: {', '.join(missing)} (bash .ci/setup.sh installs "
                        "iproute2, iptables, util-linux, docker.io)")
    if not Path("/sys/fs/cgroup").is_dir():
        problems.append("no /sys/fs/cgroup")
    if not problems:
        if run("docker", "info", check=False, timeout=30).returncode != 0:
            problems.append("the host's Docker engine does not answer (the images come from "
                            "it): bash .ci/setup.sh")
        else:
            absent = [image for image in images
                      if run("docker", "image", "inspect", image, check=False).returncode != 0]
            if absent:
                problems.append(f"images missing on the host: {', '.join(absent)} "
                                "(bash compose/build-images.sh)")
        if run("iptables", "-S", "FORWARD", check=False).returncode != 0:
            problems.append("iptables does not work here")
    if problems:
        raise ClusterError("cannot build the multi-node Swarm: " + "; ".join(problems))


def subnet_taken() -> str | None:
    """An address or a route in 10.199.0.0/24 on a device that is not ours."""
    found = [*run("ip", "-o", "addr", "show", "to", f"{SUBNET}.0/24").stdout.splitlines(),
             *run("ip", "-o", "route", "show", "root", f"{SUBNET}.0/24").stdout.splitlines()]
    foreign = [line for line in found if BRIDGE not in line.split()]
    return "; ".join(foreign) or None


# --- one test Swarm at a time on this machine -------------------------------------------------


LOCK = Path("/run/astest.lock")
"""Held (flock) by the run whose Swarm exists: the names and the subnet are fixed, and a
second run's `clean()` would tear down the first one's nodes. The kernel releases it when
the holder dies, so an aborted run's leftovers are cleaned by the next."""


@contextlib.contextmanager
def exclusive(wait: float) -> Iterator[None]:
    """Hold the machine's test-Swarm lock, waiting at most `wait` seconds for another run."""
    with LOCK.open("a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"another run holds {LOCK} (its multi-node Swarm is in use) after "
                        f"{wait:.0f} s of waiting") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- leftovers ------------------------------------------------------------------------------


def clean() -> None:
    """Remove every trace of a multi-node Swarm made here, this run's or an aborted run's:
    processes, cgroups, namespaces, links, the iptables rule, mounts and folders. Touches
    nothing else: everything it looks for is named astest-n*, br-astest or carries the
    marker."""
    for _ in range(40):
        pids = node_processes()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.25)
    else:
        raise ClusterError(f"processes of the test Swarm survive SIGKILL: {node_processes()}")
    _remove_cgroups()
    for name in _netns_names():
        run("ip", "netns", "del", name, check=False)
    for link in _links():
        run("ip", "link", "del", link, check=False)
    for chain in ("DOCKER-USER", "FORWARD"):
        for _ in range(20):
            if run("iptables", "-C", chain, *FORWARD_RULE, check=False).returncode != 0:
                break
            run("iptables", "-D", chain, *FORWARD_RULE)
    for target in sorted(_our_mounts(), key=len, reverse=True):
        run("umount", "-l", target, check=False)
    for folder in [*Path("/var/lib").glob("astest-*"), *Path("/run").glob(f"{PREFIX}*")]:
        run("rm", "-rf", "--one-file-system", str(folder), check=False)
    taken = subnet_taken()
    if taken:
        raise ClusterError(f"{SUBNET}.0/24 is in use on this host by something else: {taken}")


def node_processes() -> list[int]:
    """Processes of the test Swarm's nodes: the daemons and shims (marked in their
    environment), the containers (in the nodes' cgroups), anything in their network
    namespaces."""
    found = set()
    marker = f"{MARKER}={PREFIX}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cgroups = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")) or any(
            line.split(":", 2)[-1].startswith(f"/{PREFIX}") for line in cgroups.splitlines()
        ):
            found.add(int(entry))
    for name in _netns_names():
        pids = run("ip", "netns", "pids", name, check=False).stdout.split()
        found.update(int(pid) for pid in pids if pid.isdigit() and int(pid) != os.getpid())
    return sorted(found)


def _remove_cgroups() -> None:
    for top in Path("/sys/fs/cgroup").glob(f"*/{PREFIX}*"):
        for _ in range(20):
            for folder, _subdirs, _files in sorted(os.walk(top, topdown=False),
                                                   key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            if not top.exists():
                break
            time.sleep(0.25)
    for top in Path("/sys/fs/cgroup").glob(f"{PREFIX}*"):  # a cgroup v2 only host
        for folder, _subdirs, _files in sorted(os.walk(top, topdown=False),
                                               key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _netns_names() -> list[str]:
    listed = run("ip", "netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(PREFIX)]


def _links() -> list[str]:
    names = []
    for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == BRIDGE or name.startswith(PREFIX):
            names.append(name)
    return names


def _our_mounts() -> list[str]:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if any(target.startswith(f"{root}/{PREFIX}")
               for root in ("/var/lib", "/run", "/var/run", "/run/netns")):
            targets.append(target)
    return targets


if __name__ == "__main__":
    with exclusive(wait=0):  # `python -m tests.cluster.nodes`: remove what an aborted run left
        clean()
    print("no trace of a test Swarm left")
