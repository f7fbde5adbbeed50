-- Campaign rows mirror the configuration (callbackd/services/campaigns.py).

-- name: upsert_campaign
INSERT INTO campaigns (name, pbx, queue, mode)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
    SET pbx = excluded.pbx, queue = excluded.queue, mode = excluded.mode, updated_at = now()
    WHERE (campaigns.pbx, campaigns.queue, campaigns.mode)
          IS DISTINCT FROM (excluded.pbx, excluded.queue, excluded.mode)
RETURNING *;

-- name: get_campaign_by_name
SELECT * FROM campaigns WHERE name = $1;
