"""Campaign rows follow the configuration: one row per configured campaign, by name."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog

from callbackd.db.models import CampaignRow
from callbackd.db.sql import load_queries
from callbackd.domain.capture import CampaignRef
from callbackd.settings import Campaign


async def sync_campaigns(
    conn: Any, campaigns: Mapping[str, Campaign]
) -> dict[tuple[str, str], CampaignRef]:
    """Upsert every configured campaign; return them keyed by (pbx, queue)."""
    queries = load_queries("campaigns")
    log = structlog.get_logger("callbackd.campaigns")
    refs: dict[tuple[str, str], CampaignRef] = {}
    for name, campaign in campaigns.items():
        row = await conn.fetchrow(
            queries["upsert_campaign"],
            name,
            campaign.pbx,
            campaign.queue,
            str(campaign.mode),
            campaign.retry.expiry_seconds,
        )
        if row is None:  # unchanged: the upsert's WHERE skipped the update
            row = await conn.fetchrow(queries["get_campaign_by_name"], name)
        else:
            log.info("campaign synced", campaign=name, pbx=campaign.pbx, queue=campaign.queue)
        stored = CampaignRow.from_record(row)
        refs[(campaign.pbx, campaign.queue)] = CampaignRef(
            id=stored.id,
            name=name,
            pbx=campaign.pbx,
            queue=campaign.queue,
            min_hold_seconds=campaign.min_hold_seconds,
            priority=campaign.priority,
            initial_delay=timedelta(seconds=campaign.initial_delay_seconds),
            expiry=timedelta(seconds=campaign.retry.expiry_seconds),
        )
    return refs
