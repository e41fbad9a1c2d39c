"""`hpsearch tracking serve`: an MLflow tracking server for multi-node searches.

Trials on other nodes log over HTTP to it (``--tracking-uri http://HOST:PORT``).
Backend: SQLite under the storage root, or any SQLAlchemy URI (PostgreSQL) via
``--backend-store-uri``; its own artifact root; MLflow's background job
execution off. It runs in its own process group, so stopping it (Ctrl-C, or
SIGTERM to the group) leaves no gunicorn/uvicorn worker behind.

``--public`` binds 0.0.0.0 and requires MLflow's basic-auth app: an admin
password is generated (never MLflow's documented default), printed once and
stored with 0600 permissions beside the auth database.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path


def command(root: Path, *, port: int, public: bool, backend: str | None = None) -> tuple[list, dict]:
    root.mkdir(parents=True, exist_ok=True)
    backend = backend or f"sqlite:///{(root / 'mlflow-server.db').resolve()}"
    artifacts = (root / "mlflow-server-artifacts").resolve()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--artifacts-destination", str(artifacts), "--host",
           "0.0.0.0" if public else "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if public:
        cmd += ["--app-name", "basic-auth"]
        env.update(auth_env(root))
    return cmd, env


def auth_env(root: Path) -> dict:
    """Basic-auth config under the storage root; the admin password generated once (0600)."""
    pw_file = root / "mlflow-admin-password"
    if not pw_file.is_file():
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
        print(f"MLflow admin user 'admin', password: {pw_file.read_text()} "
              f"(shown once; stored in {pw_file}, mode 0600)", flush=True)
    ini = root / "mlflow-basic-auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{(root / 'mlflow-basic-auth.db').resolve()}\n"
                   "admin_username = admin\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": pw_file.read_text().strip()}


def serve(root: Path, *, port: int, public: bool, backend: str | None = None) -> int:
    cmd, env = command(root, port=port, public=public, backend=backend)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # its own process group
    where = "0.0.0.0 (basic auth)" if public else "127.0.0.1"
    print(f"MLflow tracking server on {where}:{port}; searches log with "
          f"--tracking-uri http://<this host>:{port} (Ctrl-C to stop)", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group, then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
