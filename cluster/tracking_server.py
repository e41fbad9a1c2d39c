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


def _secret(path: Path) -> tuple[str, bool]:
    """A random secret kept in ``path`` (mode 0600); (value, created now)."""
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip(), False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip(), True


def auth_env(root: Path) -> dict:
    """Basic-auth config under the storage root; the admin password and Flask's CSRF
    key generated once (0600). The password is printed only when it is created."""
    pw_file = root / "mlflow-admin-password"
    password, created = _secret(pw_file)
    if created:
        print(f"MLflow admin user 'admin', password: {password} "
              f"(shown once; stored in {pw_file}, mode 0600)", flush=True)
    csrf_key, _ = _secret(root / "mlflow-flask-secret-key")
    ini = root / "mlflow-basic-auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{(root / 'mlflow-basic-auth.db').resolve()}\n"
                   "admin_username = admin\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": csrf_key}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(root: Path, *, port: int, public: bool, backend: str | None = None) -> int:
    cmd, env = command(root, port=port, public=public, backend=backend)
    # Ctrl-C and SIGTERM (a service manager, `kill`) both stop the server's whole
    # process group, also where SIGINT was ignored at start (a `cmd &` of a script)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
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
