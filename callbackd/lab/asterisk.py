"""A real Asterisk 22 for tests, the demo and benchmarks: the "lab" call centre.

:class:`LabAsterisk` runs one private Asterisk inside the Debian sid root that
``scripts/asterisk-root`` builds, with its own config, run, log and database directories
inside that root (so parallel instances and the root's stock ``/etc/asterisk`` never meet),
the lab PBX from ``callbackd/lab/pbx/`` and callbackd's shipped dialplan loaded unchanged.
Anything that is not as expected raises :class:`LabError` with the tail of Asterisk's log:
a test run against a half-working PBX is worse than no test run.

The lab PBX's naming scheme (queues, operators, clients, callers) is documented at the top
of ``callbackd/lab/pbx/extensions.conf``.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from string import Template
from types import TracebackType
from typing import IO, Final, Literal, Self

from callbackd import dialplan_contract
from callbackd.sounds import PromptInstallError, install_prompts

PBX_DIR: Final = Path(__file__).resolve().parent / "pbx"
"""The lab PBX's config files: ``*.conf`` are copied, ``*.conf.in`` rendered per instance."""


def _shipped_dialplan_dir() -> Path:
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "dialplan"
    # An installed wheel carries the same files under callbackd/_shipped (pyproject.toml).
    return checkout if checkout.is_dir() else package / "_shipped" / "dialplan"


SHIPPED_DIALPLAN_DIR: Final = _shipped_dialplan_dir()
SHIPPED_MANAGER_SAMPLE: Final = "manager.d/callbackd.conf"
"""The AMI account sample sites copy into manager.conf (relative to the dialplan dir)."""
"""The shipped dialplan (the checkout's dialplan/), loaded exactly as sites include it."""

DATA_DIR: Final = PurePosixPath("/usr/share/asterisk")
"""astdatadir inside the root (the root's own, shared by every instance)."""

SOUNDS_DIR: Final = DATA_DIR / "sounds"
"""Where Asterisk looks for sounds; start() installs callbackd's shipped prompts here."""

INSTANCES_DIR: Final = PurePosixPath("/var/lib/callbackd-lab")
"""Parent of all instance directories, as seen inside the root."""

SHIPPED_SUBDIR: Final = "callbackd"
"""Subdirectory of an instance's etc dir holding the shipped dialplan (``#include``d)."""

LAB_QUEUES: Final = ("lab-sales", "lab-support")
"""The lab call centre's queues (pbx/queues.conf)."""

LAB_CONTEXTS: Final = (
    "lab-callers",
    "lab-operators",
    "lab-operator-modes",
    "lab-clients",
    "lab-client-modes",
    "lab-did",
    "lab-landing",
    "lab-inbound-callers",
    "lab-request-callers",
    "lab-offer-callers",
    "lab-bench-agi",
    "lab-prompts",
)
"""The lab dialplan's own contexts (pbx/extensions.conf)."""

OPERATOR_DB_FAMILY: Final = "lab-operator"
"""AstDB family deciding what ``Local/op<N>@lab-operators`` does (key ``op<N>`` or ``default``)."""

CLIENT_DB_FAMILY: Final = "lab-client"
"""AstDB family deciding what ``Local/<digits>@lab-clients`` does (key digits or ``default``)."""

OperatorMode = Literal["talk", "accept", "decline", "busy", "away"]
"""talk: answers and stays; accept / decline: answers, presses 1 / 2 after N s, stays; busy;
away: rings."""

ClientMode = Literal["answer", "confirm", "busy", "noanswer", "congestion"]
"""answer: answers, hangs up after N s; confirm: answers, presses 1 after N s, stays; busy;
noanswer: rings for N s; congestion."""

_OPERATOR_TIMED_MODES: Final = frozenset({"accept", "decline"})
"""Operator modes that take ``seconds``."""
_CLIENT_TIMED_MODES: Final = frozenset({"answer", "confirm", "noanswer"})
"""Client modes that take ``seconds``."""

AMI_HOST: Final = "127.0.0.1"
LAB_AMI_USER: Final = "lab"
"""AMI account with every permission, for test drivers."""
CALLBACKD_AMI_USER: Final = "callbackd"
"""AMI account with what callbackd gets on a site: read call,agent,user; write originate,call."""

_CLI_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 10.0
_POLL_INTERVAL: Final = 0.02
_HANGUP_REPEAT: Final = 1.0
_LOG_TAIL_LINES: Final = 40
_PR_SET_PDEATHSIG: Final = 1
_LOG_PROBLEM = re.compile(r"^\[[^\]]*\] (?:WARNING|ERROR)\[")
# An AMI client that stayed connected across restart() may Originate before the boot ends;
# Asterisk refuses it with this warning. The client's retry, not a broken lab.
_CLIENT_BEFORE_BOOT = re.compile(
    r"WARNING\[\d+\]:? pbx\.c(?::\d+ ast_pbx_start)?: PBX requires Asterisk to be fully booted$"
)
_CLI_FAILED = re.compile(r"^Command '.*' failed\.$", re.MULTILINE)
_ACTIVE_CHANNELS = re.compile(r"^(\d+) active channels?$", re.MULTILINE)
_NAMED_MEMBER_LINE = re.compile(
    r"^\s+(?P<name>.*?) \((?P<interface>[^ ()/]+/[^ ()]+)(?: from [^)]*)?\)(?P<flags>.*)$"
)
_BARE_MEMBER_LINE = re.compile(r"^\s+(?P<interface>[^ ()/]+/[^ ()]+)(?P<flags>.*)$")
_PENALTY = re.compile(r"\bwith penalty (\d+)\b")
_CONFIG_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]")
_CONFIG_MEMBER = re.compile(r"^member\s*=>\s*(?P<spec>[^;]+)")
_LOAD_LINE = re.compile(r"^load\s*=>\s*(?P<module>[\w.-]+)")
_OPERATOR_KEY = re.compile(r"^(?:op[0-9]{1,6}|default)$")
_CLIENT_KEY = re.compile(r"^(?:[0-9]{2,32}|default)$")


class LabError(RuntimeError):
    """The lab (its Asterisk, AMI or files) is not in the state a test relies on."""


@dataclass(frozen=True)
class AmiAccount:
    """Where and how to log in to one AMI account of a lab instance."""

    host: str
    port: int
    username: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class QueueMember:
    """One member of a lab queue, as ``queue show`` reports it."""

    queue: str
    interface: str
    name: str
    penalty: int
    dynamic: bool
    paused: bool


@dataclass
class _Instance:
    """Everything one started Asterisk owns; dropped as a whole by stop()."""

    instance_id: str
    inner_dir: PurePosixPath
    host_dir: Path
    ami_port: int
    lab_secret: str
    callbackd_secret: str
    stdout: IO[bytes]
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    """Size of messages.log when the current process was spawned: its boot starts there."""


def _shipped_manager_account(dialplan_dir: Path, secret: str) -> str:
    """The shipped manager.conf sample for callbackd's account, with a real secret."""
    sample = dialplan_dir / SHIPPED_MANAGER_SAMPLE
    try:
        text = sample.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError(f"no shipped AMI account sample at {sample}") from None
    if f"[{CALLBACKD_AMI_USER}]" not in text:
        raise LabError(f"{sample} does not define the [{CALLBACKD_AMI_USER}] account")
    rendered, count = re.subn(r"(?m)^secret\s*=.*$", f"secret = {secret}", text)
    if count != 1:
        raise LabError(f"{sample} must have exactly one 'secret =' line, found {count}")
    return rendered


def default_root() -> Path:
    """The Asterisk root, found the way ``scripts/asterisk-root --print-path`` finds it."""
    explicit = os.environ.get("CALLBACKD_ASTERISK_ROOT")
    if explicit:
        return Path(explicit)
    cache_dir = os.environ.get("CALLBACKD_CACHE_DIR") or "/var/cache/callbackd"
    return Path(cache_dir) / "asterisk-root"


class LabAsterisk:
    """One private Asterisk running the lab call centre; see the module docstring.

    Use as ``with LabAsterisk() as pbx: ...`` or call :meth:`start` and :meth:`stop`.
    Every method is synchronous and bounded by a timeout; from asyncio code, call the slow
    ones (start, stop, reset) through ``asyncio.to_thread``.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        dialplan_dir: Path | None = None,
        verbose: int = 0,
        boot_timeout: float = 20.0,
        keep_files: bool = False,
    ) -> None:
        """Prepare (not start) an instance.

        ``verbose`` > 0 makes Asterisk log dialplan execution to the instance's
        messages.log (slower; for debugging). ``keep_files`` leaves the instance directory
        in place after stop() so its logs can be read.
        """
        self.root = (root or default_root()).resolve()
        self.dialplan_dir = (dialplan_dir or SHIPPED_DIALPLAN_DIR).resolve()
        self.verbose = verbose
        self.boot_timeout = boot_timeout
        self.keep_files = keep_files
        self.boot_seconds: float | None = None
        """Seconds from spawning Asterisk to "fully booted" and verified, after start()."""
        self._instance: _Instance | None = None
        self._configured_members = _read_configured_members(PBX_DIR / "queues.conf")

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start Asterisk and check every module, context, queue and the AMI port.

        Raises LabError (with the tail of Asterisk's log) when anything is missing; the
        half-started instance is stopped and removed first.
        """
        if self._instance is not None:
            raise LabError(f"lab Asterisk already started in {self._instance.host_dir}")
        self._check_environment()
        # Into the shared root, as a site runs `callbackd install-sounds`: identical files
        # are skipped and every write is an atomic rename, so labs may start side by side.
        try:
            install_prompts(SOUNDS_DIR, dialplan_contract.PROMPT_LANGUAGES, root=self.root)
        except (PromptInstallError, OSError) as exc:
            raise LabError(f"cannot install callbackd's prompts in {self.root}: {exc}") from exc
        _remove_stale_instances(self.root / INSTANCES_DIR.relative_to("/"))
        instance = self._create_instance()
        self._instance = instance
        try:
            self._spawn(instance)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop and start the same instance: same AMI port, secrets, config and logs.

        What a PBX restart looks like to an AMI client: the connection drops, the port is
        refused for a moment, then the same Asterisk answers again (queue_log kept).
        """
        instance = self._started()
        process = instance.process
        if process is not None and process.poll() is None:
            self._stop_process(process, timeout)
        self._spawn(instance, clients_connected=True)

    def _spawn(self, instance: _Instance, *, clients_connected: bool = False) -> None:
        chroot = self._check_environment()
        started = time.monotonic()
        log_path = instance.host_dir / "log" / "messages.log"
        instance.log_offset = log_path.stat().st_size if log_path.exists() else 0
        instance.process = subprocess.Popen(
            [
                chroot,
                str(self.root),
                "asterisk",
                "-C",
                self._inner("etc/asterisk.conf"),
                "-f",
                "-n",
            ],
            stdin=subprocess.DEVNULL,
            stdout=instance.stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent_preexec(),
        )
        self._wait_booted(started + self.boot_timeout)
        self._verify(clients_connected=clients_connected)
        self.boot_seconds = time.monotonic() - started

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the Asterisk this object started and remove its instance directory.

        Idempotent. Asterisk gets ``core stop now``, then SIGTERM, then SIGKILL — always by
        the pid of the process we spawned, never by name.
        """
        instance = self._instance
        if instance is None:
            return
        try:
            process = instance.process
            if process is not None and process.poll() is None:
                self._stop_process(process, timeout)
        finally:
            instance.stdout.close()
            self._instance = None
            if not self.keep_files:
                shutil.rmtree(instance.host_dir, ignore_errors=False)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the Asterisk we started is still alive."""
        instance = self._instance
        return (
            instance is not None
            and instance.process is not None
            and instance.process.poll() is None
        )

    # ----------------------------------------------------------------- facts

    @property
    def pid(self) -> int:
        """Pid of our Asterisk process."""
        process = self._started().process
        if process is None:
            raise LabError("lab Asterisk has no process")
        return process.pid

    @property
    def instance_dir(self) -> Path:
        """Host path of this instance's directory (inside the root)."""
        return self._started().host_dir

    @property
    def etc_dir(self) -> Path:
        """Host path of the rendered config (astetcdir)."""
        return self.instance_dir / "etc"

    @property
    def log_dir(self) -> Path:
        """Host path of astlogdir (messages.log, queue_log)."""
        return self.instance_dir / "log"

    @property
    def queue_log_path(self) -> Path:
        """Host path of the instance's queue_log file."""
        return self.log_dir / "queue_log"

    @property
    def messages_log_path(self) -> Path:
        """Host path of the instance's messages.log (warnings, errors, verbose output)."""
        return self.log_dir / "messages.log"

    @property
    def ami_host(self) -> str:
        """The AMI listens on loopback only."""
        return AMI_HOST

    @property
    def ami_port(self) -> int:
        """TCP port of this instance's AMI on 127.0.0.1 (chosen free at start)."""
        return self._started().ami_port

    @property
    def ami_lab(self) -> AmiAccount:
        """The all-permissions account for test drivers."""
        instance = self._started()
        return AmiAccount(AMI_HOST, instance.ami_port, LAB_AMI_USER, instance.lab_secret)

    def ami_test_account(self, username: str) -> AmiAccount:
        """One of the deliberately under-privileged lab accounts (``lab-deaf``, ``lab-mute``)."""
        if username not in ("lab-deaf", "lab-mute"):
            raise LabError(f"no lab test account {username!r}")
        instance = self._started()
        return AmiAccount(AMI_HOST, instance.ami_port, username, instance.lab_secret)

    @property
    def ami_callbackd(self) -> AmiAccount:
        """The least-privilege account callbackd would get on a real site."""
        instance = self._started()
        return AmiAccount(
            AMI_HOST, instance.ami_port, CALLBACKD_AMI_USER, instance.callbackd_secret
        )

    # ----------------------------------------------------------------- control

    def cli(self, command: str, timeout: float = _CLI_TIMEOUT, *, check: bool = True) -> str:
        """Run one Asterisk CLI command (``asterisk -rx``) and return its output.

        Raises LabError when Asterisk cannot be reached, does not know the command, or does
        not answer within ``timeout`` seconds; with ``check`` also when the command prints
        its usage or says it failed.
        """
        if any(c in command for c in "\r\n\0"):
            raise LabError(f"CLI command with a line break or NUL: {command!r}")
        self._started()
        argv = [
            _chroot_binary(),
            str(self.root),
            "asterisk",
            "-C",
            self._inner("etc/asterisk.conf"),
            "-rx",
            command,
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(
                f"Asterisk CLI {command!r} gave no answer within {timeout} s"
                f"{self._log_tail_suffix()}"
            ) from exc
        output = done.stdout.decode("utf-8", "replace")
        errors = done.stderr.decode("utf-8", "replace")
        if done.returncode != 0 or "Unable to connect to remote asterisk" in output + errors:
            raise LabError(
                f"Asterisk CLI {command!r} failed (exit {done.returncode}): "
                f"{(output + errors).strip()}{self._log_tail_suffix()}"
            )
        if output.startswith("No such command"):
            raise LabError(f"Asterisk does not know the CLI command {command!r}: {output.strip()}")
        if check and (output.startswith("Usage:") or _CLI_FAILED.search(output)):
            raise LabError(f"Asterisk CLI {command!r} failed: {output.strip()}")
        return output

    def active_channels(self) -> int:
        """Number of channels Asterisk has right now."""
        output = self.cli("core show channels count")
        match = _ACTIVE_CHANNELS.search(output)
        if match is None:
            raise LabError(f"cannot read the channel count from: {output!r}")
        return int(match.group(1))

    def wait_for_no_channels(self, timeout: float = 10.0, *, hang_up: bool = True) -> None:
        """Poll until Asterisk has no channel, hanging up every channel if ``hang_up``."""
        deadline = time.monotonic() + timeout
        next_hangup = 0.0
        while True:
            now = time.monotonic()
            if hang_up and now >= next_hangup:
                # Repeated: a queue or an in-flight Originate can create channels after a
                # request; each round hangs those up too.
                self.cli("channel request hangup all")
                next_hangup = now + _HANGUP_REPEAT
            count = self.active_channels()
            if count == 0:
                return
            if now >= deadline:
                raise LabError(
                    f"{count} channel(s) still up after {timeout} s:\n"
                    f"{self.cli('core show channels')}"
                )
            time.sleep(_POLL_INTERVAL)

    def reset(self, timeout: float = 15.0) -> None:
        """Bring the PBX back to its just-started state between tests.

        Hangs up every channel and waits until none is left, resets queue statistics, puts
        the queue members back as configured (removes members added at run time, unpauses,
        restores penalties) and forgets per-operator / per-client behaviours.
        """
        self.wait_for_no_channels(timeout)
        self.cli("queue reset stats")
        self._restore_members()
        for family in (OPERATOR_DB_FAMILY, CLIENT_DB_FAMILY):
            self.cli(f"database deltree {family}")

    def set_operator(
        self, operator: str, mode: OperatorMode | None, seconds: float | None = None
    ) -> None:
        """Decide what ``Local/<operator>@lab-operators`` does from the next call on.

        ``operator`` is ``op<N>`` or ``default`` (every op<N> without its own setting);
        ``seconds`` is how long "accept" / "decline" waits before pressing 1 / 2 (default 1;
        fractions work: 0.5 presses half a second after answering).
        ``mode=None`` forgets the setting. Unset operators ring and never answer ("away").
        """
        if not _OPERATOR_KEY.match(operator):
            raise LabError(f"operator must be op<N> or default, not {operator!r}")
        if seconds is not None and (mode not in _OPERATOR_TIMED_MODES or seconds < 0):
            raise LabError(f"seconds={seconds!r} makes no sense for operator mode {mode!r}")
        self._db_set(OPERATOR_DB_FAMILY, operator, _mode_value(mode, seconds))

    def set_client(self, number: str, mode: ClientMode | None, seconds: int | None = None) -> None:
        """Decide what ``Local/<number>@lab-clients`` does from the next call on.

        ``number`` is digits or ``default``; ``seconds`` is how long "answer" stays on the
        line or "noanswer" rings (default 600), or how long "confirm" waits before pressing 1
        (default 1). ``mode=None`` forgets the setting. Unset numbers answer and stay.
        """
        if not _CLIENT_KEY.match(number):
            raise LabError(f"client number must be 2-32 digits or default, not {number!r}")
        if seconds is not None and (mode not in _CLIENT_TIMED_MODES or seconds < 0):
            raise LabError(f"seconds={seconds!r} makes no sense for client mode {mode!r}")
        self._db_set(CLIENT_DB_FAMILY, number, _mode_value(mode, seconds))

    def queue_members(self, queue: str) -> list[QueueMember]:
        """The members of ``queue`` right now."""
        output = self.cli(f"queue show {queue}")
        if not output.startswith(f"{queue} has "):
            raise LabError(f"no queue {queue!r} in the lab Asterisk: {output.strip()}")
        return _parse_members(queue, output)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of Asterisk's stdout and messages.log, for error messages."""
        instance = self._instance
        if instance is None:
            return "(lab Asterisk not started)"
        parts = []
        for path in (instance.host_dir / "asterisk.out", instance.host_dir / "log/messages.log"):
            parts.append(f"--- {path.name} (last {lines} lines)\n{_tail(path, lines)}")
        return "\n".join(parts)

    # ----------------------------------------------------------------- internals

    def _started(self) -> _Instance:
        if self._instance is None:
            raise LabError("lab Asterisk is not started")
        return self._instance

    def _inner(self, relative: str) -> str:
        """Path of ``relative`` (inside the instance dir) as Asterisk sees it in the chroot."""
        return str(self._started().inner_dir / relative)

    def _log_tail_suffix(self) -> str:
        return f"\n{self.log_tail()}"

    def _check_environment(self) -> str:
        if os.geteuid() != 0:
            raise LabError("the lab runs Asterisk under chroot, which needs root")
        if not (self.root / "usr/sbin/asterisk").is_file():
            raise LabError(
                f"no Asterisk root at {self.root}: run scripts/asterisk-root "
                "(or set CALLBACKD_ASTERISK_ROOT)"
            )
        if not sorted(self.dialplan_dir.glob("*.conf")):
            raise LabError(f"no shipped dialplan (*.conf) in {self.dialplan_dir}")
        return _chroot_binary()

    def _create_instance(self) -> _Instance:
        instance_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        inner_dir = INSTANCES_DIR / instance_id
        host_dir = self.root / inner_dir.relative_to("/")
        module_dirs = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not module_dirs:
            raise LabError(f"no Asterisk modules directory under {self.root}/usr/lib")
        for sub in ("etc", f"etc/{SHIPPED_SUBDIR}", "db", "spool", "run", "log", "cache"):
            (host_dir / sub).mkdir(parents=True)
        try:
            return self._render_instance(instance_id, inner_dir, host_dir, module_dirs[0])
        except BaseException:
            shutil.rmtree(host_dir, ignore_errors=True)
            raise

    def _render_instance(
        self, instance_id: str, inner_dir: PurePosixPath, host_dir: Path, module_dir: Path
    ) -> _Instance:
        ami_port = _free_tcp_port(AMI_HOST)
        callbackd_secret = secrets.token_hex(16)
        values = {
            "etc_dir": str(inner_dir / "etc"),
            "module_dir": "/" + str(module_dir.relative_to(self.root)),
            "data_dir": str(DATA_DIR),
            "cache_dir": str(inner_dir / "cache"),
            "db_dir": str(inner_dir / "db"),
            "spool_dir": str(inner_dir / "spool"),
            "run_dir": str(inner_dir / "run"),
            "log_dir": str(inner_dir / "log"),
            "verbose": str(self.verbose),
            "ami_port": str(ami_port),
            "channelvars": dialplan_contract.MANAGER_CHANNELVARS,
            "lab_user": LAB_AMI_USER,
            "lab_secret": secrets.token_hex(16),
            "callbackd_secret": callbackd_secret,
            "callbackd_account": _shipped_manager_account(self.dialplan_dir, callbackd_secret),
        }
        for source in sorted(PBX_DIR.iterdir()):
            if source.name.endswith(".conf"):
                shutil.copyfile(source, host_dir / "etc" / source.name)
            elif source.name.endswith(".conf.in"):
                text = Template(source.read_text(encoding="utf-8")).substitute(values)
                target = host_dir / "etc" / source.name.removesuffix(".in")
                target.write_text(text, encoding="utf-8")
                if "secret" in text:
                    target.chmod(0o600)
        for source in sorted(self.dialplan_dir.glob("*.conf")):
            shutil.copyfile(source, host_dir / "etc" / SHIPPED_SUBDIR / source.name)
        return _Instance(
            instance_id=instance_id,
            inner_dir=inner_dir,
            host_dir=host_dir,
            ami_port=ami_port,
            lab_secret=values["lab_secret"],
            callbackd_secret=values["callbackd_secret"],
            stdout=(host_dir / "asterisk.out").open("wb"),
        )

    def _boot_log(self) -> str:
        """What Asterisk wrote to messages.log since the current process was spawned."""
        instance = self._started()
        try:
            with self.messages_log_path.open("rb") as handle:
                handle.seek(instance.log_offset)
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_booted(self, deadline: float) -> None:
        """Poll (under the boot deadline) until Asterisk answers on its control socket."""
        instance = self._started()
        process = instance.process
        assert process is not None
        control_socket = instance.host_dir / "run" / "asterisk.ctl"
        last_error: LabError | None = None
        while True:
            if process.poll() is not None:
                raise LabError(
                    f"Asterisk exited with status {process.returncode} while booting"
                    f"{self._log_tail_suffix()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = f": {last_error}" if last_error else ""
                raise LabError(
                    f"Asterisk did not boot within {self.boot_timeout} s{reason}"
                    f"{self._log_tail_suffix()}"
                )
            if control_socket.exists():
                try:
                    output = self.cli("core waitfullybooted", timeout=remaining)
                except LabError as exc:
                    # The socket file exists a moment before Asterisk listens on it.
                    last_error = exc
                else:
                    if "fully booted" in output:
                        return
                    raise LabError(
                        f"Asterisk did not boot: {output.strip()}{self._log_tail_suffix()}"
                    )
            time.sleep(_POLL_INTERVAL)

    def _verify(self, *, clients_connected: bool = False) -> None:
        """Fail loudly unless everything the lab relies on is really there."""
        problems = [
            line
            for line in self._boot_log().splitlines()
            if _LOG_PROBLEM.match(line)
            and not (clients_connected and _CLIENT_BEFORE_BOOT.search(line))
        ]
        if problems:
            raise LabError(
                "Asterisk logged warnings/errors while booting:\n"
                + "\n".join(problems)
                + self._log_tail_suffix()
            )
        self._verify_modules()
        for context in (*LAB_CONTEXTS, *sorted(dialplan_contract.CONTEXTS)):
            output = self.cli(f"dialplan show {context}", check=False)
            if f"[ Context '{context}' created by" not in output:
                raise LabError(
                    f"dialplan context {context!r} is not loaded: {output.strip()}"
                    f"{self._log_tail_suffix()}"
                )
        for queue in LAB_QUEUES:
            members = {m.interface: m.penalty for m in self.queue_members(queue)}
            if members != self._configured_members[queue]:
                raise LabError(
                    f"queue {queue} has members {members}, "
                    f"configured {self._configured_members[queue]}"
                )
        if not self.queue_log_path.is_file():
            raise LabError(
                f"Asterisk wrote no queue_log at {self.queue_log_path}{self._log_tail_suffix()}"
            )
        self._verify_ami_banner()

    def _verify_modules(self) -> None:
        wanted = _read_module_list(PBX_DIR / "modules.conf")
        running = set()
        for line in self.cli("module show").splitlines():
            fields = line.split()
            if fields and "Running" in fields[1:]:
                running.add(fields[0])
        missing = sorted(wanted - running)
        if missing:
            raise LabError(
                f"Asterisk modules not running: {', '.join(missing)}{self._log_tail_suffix()}"
            )

    def _verify_ami_banner(self) -> None:
        port = self._started().ami_port
        try:
            with socket.create_connection((AMI_HOST, port), timeout=5.0) as conn:
                banner = conn.recv(200)
        except OSError as exc:
            raise LabError(
                f"AMI on {AMI_HOST}:{port} does not answer: {exc}{self._log_tail_suffix()}"
            ) from exc
        if not banner.startswith(b"Asterisk Call Manager/"):
            raise LabError(f"{AMI_HOST}:{port} is not our AMI, it said {banner!r}")

    def _stop_process(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        try:
            self.cli("core stop now", timeout=min(timeout, _CLI_TIMEOUT))
        except LabError:
            # It did not take the polite request; the signals below are the fallback.
            process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def _db_set(self, family: str, key: str, value: str | None) -> None:
        if value is None:
            # "could not be removed" just means it was not set: the wanted end state.
            self.cli(f"database del {family} {key}", check=False)
            return
        output = self.cli(f"database put {family} {key} {value}")
        if "success" not in output.lower():
            raise LabError(f"cannot store {family}/{key}={value}: {output.strip()}")

    def _restore_members(self) -> None:
        for queue in LAB_QUEUES:
            wanted = self._configured_members[queue]
            changed = False
            for member in self.queue_members(queue):
                interface = member.interface
                if member.dynamic or interface not in wanted:
                    self.cli(f"queue remove member {interface} from {queue}")
                    changed = True
                    continue
                if member.paused:
                    self.cli(f"queue unpause member {interface} queue {queue}")
                    changed = True
                if member.penalty != wanted[interface]:
                    self.cli(f"queue set penalty {wanted[interface]} on {interface} in {queue}")
                    changed = True
            if changed:
                now = {
                    m.interface: m.penalty
                    for m in self.queue_members(queue)
                    if not (m.dynamic or m.paused)
                }
                if now != wanted:
                    raise LabError(f"cannot restore queue {queue}: members {now}, want {wanted}")


def _mode_value(mode: str | None, seconds: float | None) -> str | None:
    """The AstDB value the lab dialplan reads: ``mode`` or ``mode:seconds``."""
    if mode is None or seconds is None:
        return mode
    if isinstance(seconds, float):
        return f"{mode}:{seconds:.3f}"
    return f"{mode}:{seconds}"


def _parse_members(queue: str, output: str) -> list[QueueMember]:
    members: list[QueueMember] = []
    in_members = False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped == "Members:":
            in_members = True
            continue
        if stripped.startswith(("No Callers", "Callers:", "No Members")):
            in_members = False
            continue
        if not in_members or not stripped:
            continue
        # A member added without a name is shown by its interface alone.
        match = _NAMED_MEMBER_LINE.match(line) or _BARE_MEMBER_LINE.match(line)
        if match is None:
            raise LabError(f"cannot parse a member of queue {queue}: {line!r}")
        flags = match.group("flags")
        penalty = _PENALTY.search(flags)
        members.append(
            QueueMember(
                queue=queue,
                interface=match.group("interface"),
                name=match.groupdict().get("name") or match.group("interface"),
                penalty=int(penalty.group(1)) if penalty else 0,
                dynamic="(dynamic)" in flags,
                paused="(paused" in flags,
            )
        )
    return members


def _read_configured_members(queues_conf: Path) -> dict[str, dict[str, int]]:
    """Static members (interface -> penalty) of each lab queue, from queues.conf."""
    members: dict[str, dict[str, int]] = {}
    section: str | None = None
    for raw in queues_conf.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if header := _CONFIG_SECTION.match(line):
            section = header.group("name")
            continue
        if section in LAB_QUEUES and (member := _CONFIG_MEMBER.match(line)):
            fields = [f.strip() for f in member.group("spec").split(",")]
            penalty = int(fields[1]) if len(fields) > 1 and fields[1] else 0
            members.setdefault(section, {})[fields[0]] = penalty
    missing = [q for q in LAB_QUEUES if q not in members]
    if missing:
        raise LabError(f"{queues_conf} has no members for {missing}")
    return members


def _read_module_list(modules_conf: Path) -> set[str]:
    """Modules the lab's modules.conf loads explicitly; each must be running after boot."""
    modules = set()
    for raw in modules_conf.read_text(encoding="utf-8").splitlines():
        if match := _LOAD_LINE.match(raw.strip()):
            modules.add(match.group("module"))
    if not modules:
        raise LabError(f"{modules_conf} loads no module")
    return modules


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no such file)"
    return "\n".join(text.splitlines()[-lines:])


def _free_tcp_port(host: str) -> int:
    """A TCP port nobody listens on right now (Asterisk binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _chroot_binary() -> str:
    found = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin")
    if found is None:
        raise LabError("no chroot binary on this machine")
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_instances(instances_dir: Path) -> None:
    """Remove instance dirs left by lab processes that died without stop().

    A directory is stale only when both the Python process that created it (its name
    starts with that pid) and the Asterisk recorded in its pid file are gone; anything
    else may belong to a lab running right now and is left alone.
    """
    if not instances_dir.is_dir():
        return
    for entry in instances_dir.iterdir():
        creator, _, _ = entry.name.partition("-")
        if not creator.isdigit() or _pid_alive(int(creator)):
            continue
        pid_file = entry / "run" / "asterisk.pid"
        try:
            asterisk_pid = int(pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            asterisk_pid = None
        if asterisk_pid is not None and _pid_alive(asterisk_pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _die_with_parent_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM Asterisk if the process that started it dies.

    Only from the main thread: the signal follows the *thread* that forked, and a worker
    thread (asyncio.to_thread) may end long before the lab should.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec
