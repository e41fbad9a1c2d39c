"""A real local Ray cluster: one head plus N worker nodes started with `ray start`.

Every node is its own raylet (its own resources, its own node id), exactly as
on separate machines; Tune spreads trials over them. Security defaults:

- token authentication (``RAY_AUTH_MODE=token``) with a generated token kept in
  ``$HPSEARCH_HOME/ray_token`` (mode 0600); every node, ``submit`` and ``jobs``
  read it from there, and it is never printed or logged;
- the dashboard and Jobs API bind to 127.0.0.1 unless ``public=True``;
- node memory is given explicitly (Ray over-reports memory on small machines).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path


class ClusterError(RuntimeError):
    pass


class NodesDidNotJoin(RuntimeError):
    """A node this tool started is not alive in the GCS within the wait (exit code 1)."""


JOIN_WAIT = 180.0  # s: a node joins in seconds; a busy machine can take minutes
SLOW_JOIN = "The current node timed out during startup"  # `ray start`'s own 30 s limit


def home() -> Path:
    return Path(os.environ.get("HPSEARCH_HOME", Path.home() / ".config" / "hpsearch"))


def token_path() -> Path:
    return home() / "ray_token"


def state_path() -> Path:
    return home() / "cluster.json"


def ensure_token() -> Path:
    """The cluster token file, generated once with 0600 permissions."""
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    path.chmod(0o600)
    return path


def read_token() -> str | None:
    """$RAY_AUTH_TOKEN, else the token file; None when neither exists."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", token_path()))
    return path.read_text().strip() if path.is_file() else None


def use_cluster_token() -> None:
    """Before Ray is imported: when this machine started a cluster (`cluster up`) and no
    auth mode is set, connect with its token (Ray reads these variables at import)."""
    if "RAY_AUTH_MODE" not in os.environ and token_path().is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(token_path()))


def auth_env() -> dict:
    """Environment for Ray processes of a cluster this tool starts or reaches."""
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(ensure_token())}


def temp_dir(port: int) -> str:
    """Short (Unix socket paths are limited to ~107 bytes) and unique to the cluster, so
    `down` can find exactly this cluster's processes and leave other Ray instances alone."""
    return f"/tmp/hpsearch-ray-{port}"


AGENT_PORTS = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
               "--runtime-env-agent-port", "--metrics-export-port")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports no socket on this machine holds now, from the OS (bound all
    at once, then released for Ray to take a moment later)."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_ports(ports: list[int]) -> list[str]:
    """One node's agent ports (four of :func:`free_ports`). Ray's defaults (52365 ...)
    are per machine, so a second node on the same machine, or another Ray instance,
    would collide with them and the Jobs API would answer "No available agent". Ports
    derived from the GCS port by fixed offsets were no better: a GCS port in the
    ephemeral range puts them among the ports the OS hands out for connections, and a
    node whose agent finds its port taken never joins."""
    return [arg for flag, port in zip(AGENT_PORTS, ports) for arg in (flag, str(port))]


def _ray() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _start(args: list[str]) -> None:
    # jobs run `python -m hpsearch ...` with the nodes' PATH: put this environment first,
    # as an activated virtual environment would (cloud nodes install into their python)
    env = auth_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    r = subprocess.run([_ray(), "start", *args, "--disable-usage-stats"], env=env,
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0 and SLOW_JOIN in r.stderr + r.stdout:
        # `ray start` gives a node's raylet 30 s (fixed in ray/_private/node.py) to register
        # with the GCS, then gives up but leaves its processes running; on a busy machine
        # the node often joins a little later: wait_for_nodes decides, with its own bound
        return
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise ClusterError(f"`ray start {' '.join(args[:3])} ...` failed: {' | '.join(tail)}")


def up(*, workers: int = 1, cpus_per_node: int = 1, gpus_per_node: int = 0,
       memory_gb: float = 2.0, port: int = 6379, dashboard_port: int = 8265,
       public: bool = False, wait: float = JOIN_WAIT) -> dict:
    """Start the head and ``workers`` worker nodes and return once every one of them is
    alive in the GCS, so a `cluster up && submit` spreads over all of them. `ray start`
    gives a node 30 s to register and on a busy machine fails while the node goes on
    joining; here a node gets ``wait`` seconds, and one that has not joined by then
    stops the cluster with :class:`NodesDidNotJoin` naming it."""
    if state_path().is_file():
        raise ClusterError(f"a cluster is already up ({state_path()}); `hpsearch cluster down` first")
    if workers < 0 or cpus_per_node < 1 or memory_gb <= 0:
        raise ValueError("--workers >= 0, --cpus-per-node >= 1 and --memory > 0 are required")
    host = "0.0.0.0" if public else "127.0.0.1"
    memory = str(int(memory_gb * 1024**3))
    resources = ["--num-cpus", str(cpus_per_node), "--num-gpus", str(gpus_per_node),
                 "--memory", memory]
    state = {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard_port}",
             "workers": workers, "cpus_per_node": cpus_per_node, "gpus_per_node": gpus_per_node,
             "memory_gb": memory_gb, "public": public, "token_path": str(token_path()),
             "temp_dir": temp_dir(port)}
    # written first: a start that fails half-way is stopped by `down` like a whole cluster
    state_path().parent.mkdir(parents=True, exist_ok=True)
    state_path().write_text(json.dumps(state, indent=2))
    # every node's agent ports (and the head's client-server port), distinct, from the OS
    ports = free_ports(len(AGENT_PORTS) * (workers + 1) + 1)
    agents = [ports[i * len(AGENT_PORTS):(i + 1) * len(AGENT_PORTS)] for i in range(workers + 1)]
    try:
        _start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                "--temp-dir", temp_dir(port),
                "--dashboard-host", host, "--dashboard-port", str(dashboard_port),
                "--include-dashboard", "true", "--ray-client-server-port", str(ports[-1]),
                *node_ports(agents[0]), *resources])
        # a worker's `ray start` looks the head up in the GCS and gives up soon: head first
        deadline = time.monotonic() + wait
        wait_for_nodes(state["address"], {temp_dir(port): "the head node"}, wait)
        for i in range(workers):
            # its own temp dir: nodes sharing one would share runtime_resources/, and one
            # node's clean-up of a job's working_dir would delete it under the other
            _start(["--address", state["address"], "--node-ip-address", "127.0.0.1",
                    "--temp-dir", f"{temp_dir(port)}-w{i + 1}", *node_ports(agents[i + 1]),
                    *resources])
        wait_for_nodes(state["address"], {f"{temp_dir(port)}-w{i + 1}": f"worker node {i + 1}"
                                          for i in range(workers)},
                       max(0.0, deadline - time.monotonic()), total=wait)
    except (ClusterError, NodesDidNotJoin):
        down()
        raise
    return state


# Run with the cluster's token in the environment (Ray reads it when it is imported).
_NODES = """import json, sys
from ray._raylet import GcsClient
nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=30)
print(json.dumps([{"temp_dir": n.temp_dir, "node_id": n.node_id.hex(), "alive": n.state == 0,
                   "resources": dict(n.resources_total)} for n in nodes.values()]))
"""


def gcs_nodes(address: str) -> list[dict] | None:
    """Every node the GCS at ``address`` knows: temp_dir (one per node of a cluster this
    tool starts), node_id, alive, resources. None when the GCS does not answer."""
    try:
        r = subprocess.run([sys.executable, "-c", _NODES, address], env=auth_env(),
                           capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0 or not r.stdout.strip():
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_for_nodes(address: str, expected: dict[str, str], wait: float,
                   total: float | None = None) -> None:
    """Poll the GCS until a node is alive for every temp dir in ``expected`` (temp dir ->
    the node's name in messages), for at most ``wait`` seconds (``total``: the whole
    wait, in the message)."""
    deadline = time.monotonic() + wait
    while True:
        alive = {n["temp_dir"] for n in gcs_nodes(address) or [] if n["alive"]}
        missing = [d for d in expected if d not in alive]
        if not missing:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    names = " and ".join(expected[d] for d in missing)
    raise NodesDidNotJoin(
        f"{names} did not join the Ray cluster at {address} within {total or wait:g} s (see "
        f"{missing[0]}/session_latest/logs/raylet.err); the cluster was stopped: try again, "
        "or give a busy machine longer with `cluster up --wait SECONDS`")


def read_state() -> dict | None:
    return json.loads(state_path().read_text()) if state_path().is_file() else None


def status() -> str:
    state = read_state()
    if state is None:
        raise ClusterError("no cluster is up; start one with `hpsearch cluster up`")
    # the GCS is the record of which nodes are alive; `ray status` (the autoscaler's
    # summary, refreshed every few seconds) follows, for resources in use and demands
    names = {state["temp_dir"]: "head"} | {f"{state['temp_dir']}-w{i + 1}": f"worker {i + 1}"
                                           for i in range(state["workers"])}
    order = list(names)
    nodes = sorted(gcs_nodes(state["address"]) or [], key=lambda n: (
        not n["alive"], order.index(n["temp_dir"]) if n["temp_dir"] in names else len(order)))
    lines = [f"nodes (GCS): {sum(n['alive'] for n in nodes)} alive of {len(names)} started"]
    for n in nodes:
        res = n["resources"]
        lines.append(f"  {names.get(n['temp_dir'], 'other'):<9} {n['node_id'][:12]}  "
                     f"{'ALIVE' if n['alive'] else 'DEAD':<5}  {res.get('CPU', 0):g} CPU, "
                     f"{res.get('GPU', 0):g} GPU, {res.get('memory', 0) / 1024**3:.1f} GiB memory")
    r = subprocess.run([_ray(), "status", "--address", state["address"]], env=auth_env(),
                       capture_output=True, text=True, timeout=60)
    return (f"address {state['address']}  dashboard/Jobs API {state['dashboard']}"
            f"{'  (public)' if state['public'] else ''}\n" + "\n".join(lines) + "\n"
            + (r.stdout or r.stderr))


def kill_worker(index: int) -> int:
    """SIGKILL worker node ``index`` (1-based) and its workers, as a lost machine would
    vanish: for fault-tolerance drills. Returns how many processes were killed."""
    state = read_state()
    if state is None or not 1 <= index <= state["workers"]:
        raise ClusterError(f"no worker node {index} in this cluster")
    return _stop_marked(f"{state['temp_dir']}-w{index}", hard=True)


def down() -> int:
    """Stop this cluster's Ray processes (not other Ray instances of the machine, as
    `ray stop` would) and forget it. Returns how many processes were stopped."""
    state = read_state()
    if state is None:
        raise ClusterError("no cluster is up (nothing in " f"{state_path()})")
    n = _stop_marked(state["temp_dir"])
    state_path().unlink(missing_ok=True)
    return n


def _stop_marked(marker: str, hard: bool = False) -> int:
    """Stop the processes whose command line names ``marker`` (a node's temp dir),
    and their children: SIGTERM then SIGKILL, or SIGKILL at once when ``hard``."""
    import psutil

    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or []):
                roots.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    procs = {p.pid: p for p in roots}
    for p in roots:
        try:
            procs.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    for p in procs.values():
        try:
            p.kill() if hard else p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return len(procs)
