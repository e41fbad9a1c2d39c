"""Issue 6: cloud launcher files against Ray's own schema, the upload guard, and a
real local multi-node cluster: token auth on the Jobs API, `hpsearch submit`
spreading trials over two nodes, no secret in the tracking store or logs."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from conftest import free_port

from hpsearch.cluster import jobs

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_configs_follow_rays_cluster_schema(name):
    cfg = yaml.safe_load((ROOT / "cluster" / name).read_text())
    jsonschema.validate(cfg, SCHEMA)
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert cfg["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert any("pip install" in c and "-e ." in c for c in cfg["setup_commands"])
    assert all("RAY_AUTH_MODE=token" in c for c in
               cfg["head_start_ray_commands"][1:] + cfg["worker_start_ray_commands"][1:])
    typo = copy.deepcopy(cfg)
    typo["max_worker"] = typo.pop("max_workers")  # the schema must catch this
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, SCHEMA)


def test_kuberay_file_has_a_gpu_worker_group_and_a_rayjob_running_hpsearch():
    docs = list(yaml.safe_load_all((ROOT / "cluster" / "kuberay.yaml").read_text()))
    cluster, job = docs
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = cluster["spec"]["workerGroupSpecs"]
    gpu = [w for w in workers
           if w["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
    assert gpu and gpu[0]["minReplicas"] <= gpu[0]["replicas"] <= gpu[0]["maxReplicas"]
    for container in (head, gpu[0]["template"]["spec"]["containers"][0]):
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # never a literal token
    assert (job["kind"], job["spec"]["clusterSelector"]["ray.io/cluster"]) == ("RayJob", "hpsearch")
    assert job["spec"]["entrypoint"].startswith("hpsearch run spaces/")
    assert (ROOT / job["spec"]["entrypoint"].split()[2]).is_file()


def test_upload_guard_counts_what_ray_would_upload(tmp_path):
    """The guard walks the folder with Ray's rules: submit's excludes, .gitignore (of any
    folder) and .rayignore leave files out, as Ray's package would, and its count is the
    size of the zip Ray builds; over Ray's limit (sparse files: no disk used) submit
    refuses before reaching any Jobs API."""
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "a.yaml").write_text("x: 1\n")
    (tmp_path / ".gitignore").write_text("data/\n")
    (tmp_path / "spaces" / ".rayignore").write_text("*.ckpt\n")
    for big in (tmp_path / "runs" / "huge.bin", tmp_path / ".venv" / "lib.so",
                tmp_path / "data" / "cache.bin", tmp_path / "spaces" / "old.ckpt"):
        big.parent.mkdir(parents=True, exist_ok=True)
        with open(big, "wb") as fh:
            fh.truncate(600 * 1024**2)  # excluded or ignored: none counts
    (tmp_path / "empty").mkdir()  # Ray packs an empty folder as an entry of its own
    # what Ray's own packaging writes for this folder, with submit's excludes: the guard's
    # count is that zip's size (stored uncompressed), to the byte
    from ray._private.runtime_env.packaging import _zip_files

    _zip_files(str(tmp_path), jobs.EXCLUDES, str(tmp_path / "runs" / "pkg.zip"),
               include_gitignore=True)  # under runs/: excluded, so not in itself
    assert jobs.upload_size(tmp_path) == (tmp_path / "runs" / "pkg.zip").stat().st_size
    assert jobs.upload_size(tmp_path) < 1024  # the four sparse 600 MiB files count nothing
    assert jobs.limit_bytes() == 512 * 1024**2  # Ray 2.60's gRPC message cap
    with open(tmp_path / "data.bin", "wb") as fh:
        fh.truncate(jobs.limit_bytes() - 200)  # with the zip's headers: over
    with pytest.raises(jobs.JobError, match=r"would upload 512 MiB \(Ray zips it uncompressed\), over "
                                            r"Ray's 512 MiB limit on a job's working_dir; add "
                                            r"large files to \.gitignore or \.rayignore"):
        jobs.submit(tmp_path / "spaces" / "a.yaml", address="http://127.0.0.1:1", run_args=[],
                    root=tmp_path)
    assert jobs.upload_size(ROOT) < jobs.limit_bytes()


def test_every_node_gets_distinct_agent_ports_that_nothing_holds():
    """`cluster up` takes its nodes' agent ports from the OS, all at once: distinct, and
    free (it once derived them from the GCS port, and a port among the OS's ephemeral
    ones left a worker whose metrics agent found its port taken unable to join)."""
    import socket

    from hpsearch.cluster.local import AGENT_PORTS, free_ports, node_ports

    ports = free_ports(len(AGENT_PORTS) * 3 + 1)
    assert len(set(ports)) == len(ports)
    for port in ports:  # released again, for Ray to bind
        with socket.socket() as s:
            s.bind(("", port))
    args = node_ports(ports[:4])
    assert args[0::2] == list(AGENT_PORTS) and args[1::2] == [str(p) for p in ports[:4]]


def _cluster_env(home: Path) -> dict:
    """The CLI's environment for a cluster of its own: no Ray address or auth settings
    inherited from this process, the cluster's state and token under ``home``."""
    env = {**os.environ, "HPSEARCH_HOME": str(home), "PYTHONPATH": str(ROOT)}
    for k in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(k, None)
    return env


def _cli(*args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _http(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.e2e
def test_local_cluster_token_auth_and_a_submitted_search_over_two_nodes(tmp_path):
    env = _cluster_env(tmp_path / "home")
    gcs, dash = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dash}"
    # `up` on a busy machine (the race it must not lose): one spinning process per core
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        up = _cli("cluster", "up", "--workers", "1", "--cpus-per-node", "1", "--memory", "2",
                  "--port", str(gcs), "--dashboard-port", str(dash), env=env, timeout=600)
        # `up` returned only once both nodes were alive in the GCS (not merely started)
        status = _cli("cluster", "status", env=env)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    try:
        assert up.returncode == 0, up.stderr
        token_file = tmp_path / "home" / "ray_token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) == 64
        assert token not in up.stdout + up.stderr
        assert status.returncode == 0 and "nodes (GCS): 2 alive of 2 started" in status.stdout, \
            status.stdout
        assert [" ALIVE " in line for line in status.stdout.splitlines()
                if line.startswith(("  head ", "  worker 1 "))] == [True, True], status.stdout
        # the Jobs API refuses a request without the token and serves one with it
        assert _http(f"{dashboard}/api/jobs/") == 401
        assert _http(f"{dashboard}/api/jobs/", token) == 200

        storage = tmp_path / "runs"
        sub = _cli("submit", "spaces/cluster_digits.yaml", "--address", dashboard,
                   "--", "--storage", str(storage), env=env, timeout=600)
        assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-2000:]
        assert "submitted job" in sub.stdout and "SUCCEEDED" in sub.stdout
        listing = _cli("jobs", "list", "--address", dashboard, env=env)
        assert "SUCCEEDED" in listing.stdout and "cluster_digits.yaml" in listing.stdout

        from mlflow.tracking import MlflowClient

        from hpsearch.results.status import trial_rows
        from hpsearch.results.storage import Storage

        meta, rows = trial_rows("cluster-digits", Storage(storage))
        assert len(rows) == 4 and all(r.state == "FINISHED" for r in rows)
        client = MlflowClient(meta["tracking_uri"])
        nodes = {client.get_run(r.run_id).data.tags.get("node_id") for r in rows}
        assert None not in nodes and len(nodes) == 2  # trials ran on both nodes
        # the token is nowhere in the tracking store, the job's logs or the search's files
        db = sqlite3.connect(storage / "mlflow.db")
        dump = "\n".join(db.iterdump())
        assert "node_id" in dump and token not in dump
        logs = _cli("jobs", "logs", listing.stdout.split()[0], "--address",
                    dashboard, env=env).stdout
        assert "finished: 4 trials" in logs and token not in logs
        for f in storage.rglob("*"):
            if f.is_file() and f.stat().st_size < 5_000_000:
                assert token.encode() not in f.read_bytes(), f

        # a GPU spec on this GPU-less cluster ends within its resource wait, exit 1, one line
        t0 = time.monotonic()
        gpu = _cli("submit", "spaces/cluster_digits.yaml", "--address", dashboard,
                   "--", "--storage", str(storage), "--name", "gpu-wait", "--gpus-per-trial",
                   "0.25", "--resource-wait", "10", env=env, timeout=400)
        assert gpu.returncode == 1 and "FAILED" in gpu.stdout, gpu.stdout[-3000:]
        line = next(x for x in gpu.stdout.splitlines() if "no node of the cluster" in x)
        assert "0.25 GPU" in line and "0 GPU" in line and "--gpus-per-trial 0" in line, line
        assert "--resource-wait" in line and "within 10 s" in line, line
        assert time.monotonic() - t0 < 300
        meta, rows = trial_rows("gpu-wait", Storage(storage))
        assert rows == []  # no trial ever started
        assert client.get_run(meta["parent_run_id"]).info.status == "FAILED"
    finally:
        down = _cli("cluster", "down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    with pytest.raises(urllib.error.URLError):  # the dashboard is gone with the cluster
        urllib.request.urlopen(f"{dashboard}/api/jobs/", timeout=5)
    leftover = subprocess.run(["pgrep", "-f", f"/tmp/hpsearch-ray-{gcs}"], capture_output=True)
    assert leftover.stdout.strip() == b""


@pytest.mark.e2e
def test_public_tracking_server_requires_basic_auth_and_stops_cleanly(tmp_path):
    import base64
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()  # never a fixed one: the machine may run other jobs
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "tracking", "serve", "--public",
                             "--port", str(port), "--storage", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
    try:
        pw_file = tmp_path / "mlflow-admin-password"
        deadline = time.time() + 120
        code = None
        while time.time() < deadline and proc.poll() is None:
            try:
                code = _http(url)
                break
            except urllib.error.URLError:
                time.sleep(1)
        assert code == 401  # no credentials: refused
        password = pw_file.read_text().strip()
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600 and len(password) >= 24
        assert password != "password1234"  # MLflow's documented example password
        basic = base64.b64encode(f"admin:{password}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"})
        with urllib.request.urlopen(req, timeout=20) as r:
            assert r.status == 200
        bad = base64.b64encode(b"admin:wrong").decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {bad}"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=20)
        assert e.value.code == 401
    finally:  # SIGTERM (what a service manager sends) stops it as Ctrl-C does
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "password" in out  # printed once, to the person who started it
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-f", f"mlflow.*{tmp_path}"], capture_output=True)
    assert leftover.stdout.strip() == b"", "the server's process group must be gone"


@pytest.mark.e2e
def test_losing_a_worker_node_mid_search_restarts_its_trial_elsewhere(tmp_path):
    """Three 1-CPU nodes, three trials at once (so one runs on each node); worker
    node 1 is SIGKILLed mid-trial. Its trial restarts from its last checkpoint on
    another node, the search completes, and MLflow has one finished run per trial."""
    import time

    home, storage = tmp_path / "home", tmp_path / "runs"
    env = _cluster_env(home)
    spec = yaml.safe_load((ROOT / "spaces" / "cluster_digits.yaml").read_text())
    spec.update(name="node-loss", search={"algorithm": "random", "samples": 4, "seed": 0,
                                          "concurrency": 3},
                scheduler={"name": "fifo", "max_epochs": 8, "grace_period": 1,
                           "reduction_factor": 2},
                failure={"max_failures": 2})
    path = tmp_path / "node_loss.yaml"
    path.write_text(yaml.safe_dump(spec))
    gcs = free_port()
    up = _cli("cluster", "up", "--workers", "2", "--cpus-per-node", "1", "--memory", "1.5",
              "--port", str(gcs), "--dashboard-port", str(free_port()), env=env)
    assert up.returncode == 0, up.stderr
    search = None
    try:
        search = subprocess.Popen([sys.executable, "-m", "hpsearch", "run", str(path),
                                   "--address", f"127.0.0.1:{gcs}", "--storage", str(storage)],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        from mlflow.tracking import MlflowClient

        from hpsearch.results.status import trial_rows
        from hpsearch.results.storage import Storage

        deadline, ready = time.time() + 240, False
        while time.time() < deadline and not ready and search.poll() is None:
            time.sleep(1)
            try:
                meta, rows = trial_rows("node-loss", Storage(storage))
            except Exception:
                continue
            client = MlflowClient(meta["tracking_uri"])
            running = [r for r in rows if r.state == "RUNNING"
                       and client.get_metric_history(r.run_id, "val_accuracy")]
            ready = len(running) == 3  # one trial per node, each past its first checkpoint
        assert ready, "three trials never ran at once"
        env_local = {**os.environ, "HPSEARCH_HOME": str(home)}
        killed = subprocess.run([sys.executable, "-c", "from hpsearch.cluster import local; "
                                 "print(local.kill_worker(1))"], cwd=ROOT, env=env_local,
                                capture_output=True, text=True, timeout=60)
        assert killed.returncode == 0 and int(killed.stdout) > 0, killed.stderr
        out, _ = search.communicate(timeout=600)
        assert search.returncode == 0, out[-3000:]
    finally:
        if search is not None and search.poll() is None:
            search.kill()
        _cli("cluster", "down", env=env)
    meta, rows = trial_rows("node-loss", Storage(storage))
    assert len(rows) == 4 and len({r.trial_id for r in rows}) == 4  # no duplicate runs
    assert all(r.state == "FINISHED" and r.epochs == 8 for r in rows), [
        (r.state, r.epochs) for r in rows]
    moved = []
    for trial_dir in (storage / "node-loss").glob("trial_*"):
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        nodes = [r["node_id"] for r in results]
        if len(set(nodes)) > 1:
            moved.append(trial_dir.name)
            # resumed from its checkpoint: epochs go on, they do not start again at 1
            epochs = [r["epoch"] for r in results]
            assert epochs[-1] == 8 and epochs.count(1) == 1
    assert len(moved) == 1, moved
