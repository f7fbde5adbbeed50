"""Test session wiring: real Postgres and real Asterisk fixtures, and no silent skips."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures_postgres", "tests.fixtures_asterisk"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped or xfailed test is a failure: the suite proves behaviour against real parts."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter is not None else {}
    skipped = sum(len(stats.get(kind, [])) for kind in ("skipped", "xfailed", "xpassed"))
    if skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
