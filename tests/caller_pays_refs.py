"""The caller-pays campaign the pure-logic tests judge against (tests/test_modes.py and
tests/test_caller_pays_replay.py): one definition, so both judge the same campaign."""

from __future__ import annotations

from datetime import timedelta

from callbackd.domain.capture import CampaignRef
from callbackd.domain.numbers import NumberPolicy

POLICY = NumberPolicy.build("RU")
HOTLINE = CampaignRef(
    id=7,
    name="hotline",
    pbx="pbx",
    queue="help",
    min_hold_seconds=0,
    priority=0,
    initial_delay=timedelta(0),
    expiry=timedelta(days=1),
)
