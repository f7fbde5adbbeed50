"""Pytest fixtures for the lab Asterisk: one real PBX per test session, reset per test.

Registered from tests/conftest.py (``pytest_plugins``). If the lab cannot start, every test
that needs it errors with Asterisk's own log: a missing PBX is never a skip.

Debugging knobs: CALLBACKD_LAB_VERBOSE=<n> makes Asterisk log dialplan execution to the
instance's messages.log; CALLBACKD_LAB_KEEP=1 keeps the instance directory after the run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.driver import LabDriver


@pytest.fixture(scope="session")
def lab_asterisk() -> Iterator[LabAsterisk]:
    """The session's lab Asterisk (started once, stopped at the end)."""
    lab = LabAsterisk(
        verbose=int(os.environ.get("CALLBACKD_LAB_VERBOSE", "0")),
        keep_files=os.environ.get("CALLBACKD_LAB_KEEP", "") not in ("", "0"),
    )
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def pbx(lab_asterisk: LabAsterisk) -> LabAsterisk:
    """The lab Asterisk, reset to its configured state (no channels, default members)."""
    lab_asterisk.reset()
    return lab_asterisk


@pytest_asyncio.fixture
async def ami_driver(pbx: LabAsterisk) -> AsyncIterator[LabDriver]:
    """An AMI session on the (reset) lab PBX with the all-permissions ``lab`` account."""
    driver = await LabDriver.connect(pbx.ami_lab)
    try:
        yield driver
    finally:
        await driver.close()
