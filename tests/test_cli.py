"""The ``callbackd`` command as an admin runs it: a real process, real files, real Postgres."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(
    *args: str, env: dict[str, str] | None = None, pythonpath: Path = REPO
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKD_")}
    environ["PYTHONPATH"] = str(pythonpath)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "callbackd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=pythonpath,  # `python -m` puts the working directory first on sys.path
        check=False,
    )


def test_check_config_prints_the_effective_config_without_secrets(tmp_path: Path) -> None:
    config = tmp_path / "callbackd.toml"
    config.write_text(
        '[database]\ndsn = "postgresql://callbackd:db-pass-123@db.example:5432/callbackd"\n'
        '[[ami]]\nname = "pbx"\nsecret = "ami-secret-456"\n'
        '[campaigns.sales]\nqueue = "sales"\ncaller_id = "+15551234567"\n'
    )
    done = _run("check-config", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "db-pass-123" not in done.stdout + done.stderr
    assert "ami-secret-456" not in done.stdout + done.stderr
    assert "postgresql://callbackd:***@db.example:5432/callbackd" in done.stdout
    assert "[campaigns.sales]" in done.stdout


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[campaigns.sales.retry]\nmax_attempts = 0\n", "campaigns.sales.retry.max_attempts"),
        ('[logging]\nlevel = "loud"\n', "logging.level"),
        ('[database]\ndsn = "postgresql:///x"\nbogus = 1\n', "database.bogus"),
        ("[database\n", "line 1"),
    ],
)
def test_a_broken_file_gives_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, text: str, key: str
) -> None:
    config = tmp_path / "callbackd.toml"
    config.write_text(text)
    done = _run("check-config", "--config", str(config))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert key in lines[0]
    assert "Traceback" not in done.stderr


def test_a_bad_environment_override_names_the_variable() -> None:
    done = _run("check-config", env={"CALLBACKD_LOGGING__LEVEL": "loud"})
    assert done.returncode == 2
    assert "CALLBACKD_LOGGING__LEVEL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    done = _run("check-config", "--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert "nope.toml" in done.stderr


def _events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.postgres
def test_migrate_twice_then_refuse_an_edited_migration(empty_database: str, tmp_path: Path) -> None:
    env = {"CALLBACKD_DATABASE__DSN": empty_database, "CALLBACKD_LOGGING__FORMAT": "json"}
    first = _run("migrate", env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    applied = [e["migration"] for e in _events(first.stdout) if e["event"] == "migration applied"]
    assert applied == sorted(p.name for p in (REPO / "migrations").glob("*.sql"))

    second = _run("migrate", env=env)
    assert second.returncode == 0
    assert not [e for e in _events(second.stdout) if e["event"] == "migration applied"]
    [summary] = [e for e in _events(second.stdout) if e["event"] == "schema up to date"]
    assert summary["applied_now"] == 0

    # The same code with one applied migration file edited afterwards.
    copy = tmp_path / "checkout"
    shutil.copytree(REPO / "callbackd", copy / "callbackd")
    shutil.copytree(REPO / "migrations", copy / "migrations")
    first_file = sorted((copy / "migrations").glob("0001_*.sql"))[0]
    first_file.write_text(first_file.read_text() + "\n-- edited after release\n")
    edited = _run("migrate", env=env, pythonpath=copy)
    assert edited.returncode == 1
    [refusal] = [e for e in _events(edited.stdout) if e["event"] == "migration refused"]
    assert "0001_initial.sql was changed after it was applied" in str(refusal["reason"])
    assert "Traceback" not in edited.stdout + edited.stderr


@pytest.mark.postgres
def test_migrate_against_an_unreachable_database_fails_cleanly() -> None:
    env = {
        "CALLBACKD_DATABASE__DSN": "postgresql://nobody:pw@127.0.0.1:1/none",
        "CALLBACKD_DATABASE__CONNECT_TIMEOUT_SECONDS": "2",
        "CALLBACKD_LOGGING__FORMAT": "json",
    }
    done = _run("migrate", env=env)
    assert done.returncode == 1
    [failure] = [e for e in _events(done.stdout) if e["event"] == "database unreachable"]
    assert "pw" not in json.dumps(failure)
