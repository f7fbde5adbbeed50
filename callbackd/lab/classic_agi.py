"""Classic AGI in the lab: the ``callbackd-agi`` script where the lab Asterisk can run it.

The lab Asterisk runs under chroot in a Debian sid root, so a script it starts sees only
that root: its Python, and files inside it. :func:`install_classic_agi` puts there what a
site installing callbackd on its PBX would have:

* callbackd's dependencies for the root's Python, installed once with pip (``--target``,
  binary wheels for that Python) under ``/opt/callbackd-agi/<python>/`` and reused;
* a copy of this checkout's ``callbackd`` package and a config file, in the instance dir;
* the script itself, which Asterisk runs per call: ``AGI(<script>,inbound,<queue>)``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Final

from callbackd.lab.asterisk import LabAsterisk, LabError

DEPS_DIR: Final = PurePosixPath("/opt/callbackd-agi")
REQUIREMENTS: Final = (
    "pyst2>=0.5.1",
    "asyncpg>=0.30",
    "pydantic>=2.8",
    "pydantic-settings>=2.5",
    "structlog>=24.1",
    "phonenumbers>=8.13",
    "tomli-w>=1.0",
    "panoramisk==1.4",
)
_PACKAGE: Final = Path(__file__).resolve().parents[1]
_PIP_TIMEOUT: Final = 600


def _root_python(pbx: LabAsterisk) -> str:
    done = subprocess.run(
        [
            "chroot",
            str(pbx.root),
            "python3",
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise LabError(f"no python3 in the Asterisk root: {done.stderr.strip()}")
    return done.stdout.strip()


def ensure_dependencies(pbx: LabAsterisk) -> PurePosixPath:
    """callbackd's dependencies for the root's Python (installed once); the inner path."""
    version = _root_python(pbx)
    inner = DEPS_DIR / f"python{version}"
    host = pbx.root / inner.relative_to("/")
    stamp = host / ".requirements"
    wanted = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return inner
    if host.exists():
        shutil.rmtree(host)
    host.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--target",
        str(host),
        "--python-version",
        version,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux_2_28_x86_64",
        *REQUIREMENTS,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=_PIP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        shutil.rmtree(host, ignore_errors=True)
        raise LabError(f"cannot install callbackd's dependencies for the root: {done.stderr}")
    stamp.write_text(wanted)
    return inner


def install_classic_agi(pbx: LabAsterisk, config_toml: str) -> str:
    """Install the script for this lab instance; its path as Asterisk sees it."""
    deps = ensure_dependencies(pbx)
    host_dir = pbx.instance_dir / "classic-agi"
    inner_dir = PurePosixPath("/") / host_dir.relative_to(pbx.root)
    if host_dir.exists():
        shutil.rmtree(host_dir)
    shutil.copytree(_PACKAGE, host_dir / "callbackd", ignore=shutil.ignore_patterns("__pycache__"))
    config = host_dir / "callbackd.toml"
    config.write_text(config_toml, encoding="utf-8")
    config.chmod(0o600)
    script = host_dir / "callbackd-agi"
    script.write_text(
        "#!/usr/bin/python3 -I\n"
        "import sys\n"
        f"sys.path[:0] = [{str(inner_dir)!r}, {str(deps)!r}]\n"
        "from callbackd.agi.classic import main\n"
        f"sys.exit(main(['--config', {str(inner_dir / 'callbackd.toml')!r}]))\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(inner_dir / "callbackd-agi")
