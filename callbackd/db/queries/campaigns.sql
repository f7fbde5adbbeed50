-- Campaign rows mirror the configuration (callbackd/services/campaigns.py).

-- name: upsert_campaign
-- expiry_seconds ($5) is the campaign's retry.expiry_seconds: the claims skip requests past
-- it and the dialer closes them as expired (migration 0018).
INSERT INTO campaigns (name, pbx, queue, mode, expiry_seconds)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
    SET pbx = excluded.pbx, queue = excluded.queue, mode = excluded.mode,
        expiry_seconds = excluded.expiry_seconds, updated_at = now()
    WHERE (campaigns.pbx, campaigns.queue, campaigns.mode, campaigns.expiry_seconds)
          IS DISTINCT FROM (excluded.pbx, excluded.queue, excluded.mode, excluded.expiry_seconds)
RETURNING *;

-- name: get_campaign_by_name
SELECT * FROM campaigns WHERE name = $1;
