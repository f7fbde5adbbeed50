"""A throwaway PostgreSQL cluster on 127.0.0.1 that the tests, the demo and benchmarks own.

The cluster is created with ``initdb`` in a temporary directory and started with ``pg_ctl``,
so a test can also kill it on purpose. As root the server runs as the ``postgres`` system
user (PostgreSQL refuses to run as root). ``fsync=off`` trades durability against a machine
crash for speed; commits still reach the kernel before they return, so a SIGKILL of the
server (a test's simulated crash) loses nothing that was committed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

SUPERUSER = "postgres"


class LabPostgresError(RuntimeError):
    """The lab cluster could not be created, started or used."""


def find_pg_bindir() -> Path:
    """Locate the PostgreSQL server binaries: $CALLBACKD_PG_BINDIR, then the newest Debian one."""
    override = os.environ.get("CALLBACKD_PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    raise LabPostgresError("no PostgreSQL server binaries found (install the postgresql package)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LabPostgres:
    """One private PostgreSQL cluster: start, connect strings, databases from a template, kill."""

    def __init__(self, *, bindir: Path | None = None, start_timeout: float = 30.0) -> None:
        self.bindir = bindir or find_pg_bindir()
        self.start_timeout = start_timeout
        self.port = 0
        self._base: Path | None = None
        self._run_as: str | None = SUPERUSER if os.geteuid() == 0 else None

    # -- paths -----------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        if self._base is None:
            raise LabPostgresError("the lab cluster has not been created")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the cluster on first call, then start the server and wait until it accepts."""
        if self._base is None:
            self._create()
        if not self.port:
            self.port = free_port()
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
            ]
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-o",
                options,
                "start",
            ],
            timeout=self.start_timeout + 5,
        )
        self._wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back sessions; ``immediate`` is a crash stop)."""
        if self._base is None or not self.is_running():
            return
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            timeout=self.start_timeout + 5,
        )

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; ``start()`` brings it back with recovery."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                break
            time.sleep(0.02)
        # Orphaned backends exit on their own once the postmaster is gone; wait for the port.
        while time.monotonic() < deadline and _port_open(self.port):
            time.sleep(0.02)
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def destroy(self) -> None:
        """Stop the server and remove every file of the cluster."""
        try:
            self.stop("immediate")
        finally:
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None

    def __enter__(self) -> LabPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # -- state -----------------------------------------------------------------------------
    def postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            first = pidfile.read_text().splitlines()[0]
        except (FileNotFoundError, IndexError):
            return None
        pid = int(first)
        return pid if _pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    # -- databases -------------------------------------------------------------------------
    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create a database (optionally cloned from a template) and return its DSN."""
        args = [str(self.bindir / "createdb"), *self._client_args()]
        if template:
            args += ["-T", template]
        self._run([*args, name], timeout=30)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self._run(
            [str(self.bindir / "dropdb"), *self._client_args(), "--force", "--if-exists", name],
            timeout=30,
        )

    def psql(self, database: str, sql: str) -> str:
        """Run SQL through psql (for fixtures that must not depend on the code under test)."""
        return self._run(
            [
                str(self.bindir / "psql"),
                *self._client_args(),
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-XAtq",
                "-c",
                sql,
            ],
            timeout=30,
        )

    @contextmanager
    def database(self, name: str, *, template: str | None = None) -> Iterator[str]:
        """A database for the duration of a block, dropped afterwards."""
        dsn = self.create_database(name, template=template)
        try:
            yield dsn
        finally:
            if self.is_running():
                self.drop_database(name)

    # -- internals -------------------------------------------------------------------------
    def _client_args(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER]

    def _create(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="callbackd-pg-"))
        self._base = base
        self.socket_dir.mkdir()
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            for path in (base, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(self.bindir / "pg_isready"), *self._client_args(), "-q"],
                check=False,
                timeout=10,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise LabPostgresError(f"PostgreSQL did not accept connections: {self._log_tail()}")

    def _run(self, args: list[str], *, timeout: float) -> str:
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                user=self._run_as,
                cwd=self._base or "/",
            )
        except subprocess.TimeoutExpired as exc:
            raise LabPostgresError(f"{Path(args[0]).name} timed out after {timeout} s") from exc
        if done.returncode != 0:
            raise LabPostgresError(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()} {self._log_tail()}"
            )
        return done.stdout

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (FileNotFoundError, LabPostgresError):
            return ""
        return "\n[postgres log]\n" + "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
