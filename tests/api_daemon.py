"""A real ``callbackd run`` process with the HTTP API on, for the API and CLI tests.

It runs the worktree's code (PYTHONPATH is this checkout), uses the lab Postgres, and
points its AMI endpoint at a closed port: the API is served exactly as the daemon serves
it, and the dialer never places calls (it only dials over a link that is up), so requests
stay where the tests put them.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from callbackd.domain.api import hash_token
from callbackd.lab.postgres import free_port

REPO = Path(__file__).resolve().parents[1]

CAMPAIGNS = """
[campaigns.sales]
queue = "lab-sales"
priority = 5
caller_id = '"Lab Shop" <+74950000001>'
[campaigns.support]
queue = "support"
caller_id = "+74950000002"
"""


@dataclass(frozen=True)
class ApiDaemon:
    base_url: str
    dsn: str
    config: Path
    log: Path
    tokens: dict[str, str]  # token name -> the secret token

    def auth(self, name: str = "writer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def config_text(dsn: str, *, http_port: int, tokens: dict[str, tuple[str, list[str]]]) -> str:
    """A daemon config: lab database, AMI on a closed port, two campaigns, the API on."""
    token_tables = "".join(
        f'[[http.tokens]]\nname = "{name}"\nsha256 = "{hash_token(secret)}"\n'
        f"scopes = {scopes!r}\n".replace("'", '"')
        for name, (secret, scopes) in tokens.items()
    )
    return f"""
[database]
dsn = "{dsn}"
min_connections = 1
max_connections = 8
[[ami]]
name = "lab"
port = {free_port()}
secret = "not-used"
reconnect_backoff_initial_seconds = 1.0
reconnect_backoff_max_seconds = 5.0
verify_account = false
[phone]
default_region = "RU"
blocked_prefixes = ["1"]
[logging]
format = "json"
mask_numbers = true
[http]
enabled = true
listen_port = {http_port}
max_body_bytes = 4096
{token_tables}
{CAMPAIGNS}
"""


def daemon_env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKD_")}
    environ["PYTHONPATH"] = str(REPO)
    return environ


@contextmanager
def api_daemon(dsn: str, workdir: Path) -> Iterator[ApiDaemon]:
    tokens = {
        "writer": (secrets.token_urlsafe(24), ["read", "write"]),
        "reader": (secrets.token_urlsafe(24), ["read"]),
    }
    port = free_port()
    config = workdir / "callbackd.toml"
    config.write_text(config_text(dsn, http_port=port, tokens=tokens), encoding="utf-8")
    log = workdir / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callbackd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=daemon_env(),
            cwd=REPO,
        )
    daemon = ApiDaemon(
        base_url=f"http://127.0.0.1:{port}",
        dsn=dsn,
        config=config,
        log=log,
        tokens={name: secret for name, (secret, _) in tokens.items()},
    )
    try:
        _wait_served(daemon, proc)
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_served(daemon: ApiDaemon, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{daemon.log_text()}")
        try:
            with urllib.request.urlopen(daemon.base_url + "/openapi.json", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the API did not come up:\n{daemon.log_text()}")
