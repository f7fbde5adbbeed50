-- The outbox: events written by the triggers of migration 0009, their fan-out into
-- per-target deliveries, and the delivery worker's claim (callbackd/services/outbox.py).

-- name: events_to_fan_out
-- Events no worker has fanned out yet; rows another worker is fanning out are skipped.
SELECT * FROM outbox
WHERE fanned_out_at IS NULL AND channel = 'event'
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: add_deliveries
INSERT INTO outbox_deliveries (outbox_id, target)
SELECT $1, target FROM unnest($2::text[]) AS t (target)
ON CONFLICT (outbox_id, target) DO NOTHING;

-- name: add_sms
-- Refused without error (no row returned) when this event already has its SMS (dedupe_key)
-- or another SMS to the number is inside its quiet window (the exclusion constraint).
INSERT INTO outbox (channel, topic, dedupe_key, request_id, campaign_id, number, quiet_until,
                    payload, fanned_out_at)
VALUES ('sms', $1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, now())
ON CONFLICT DO NOTHING
RETURNING id, event_id;

-- name: mark_fanned_out
UPDATE outbox SET fanned_out_at = now() WHERE id = ANY ($1::bigint[]);

-- name: claim_due
-- One statement: lock the due deliveries for our targets (skipping those another worker
-- holds), count the try and lease them: available_at moves past the longest send, so a
-- worker that dies mid-send leaves them due again later instead of stuck.
WITH due AS (
    SELECT d.outbox_id, d.target
    FROM outbox_deliveries d
    WHERE d.delivered_at IS NULL AND d.given_up_at IS NULL
      AND d.available_at <= now()
      AND d.target = ANY ($1::text[])
    ORDER BY d.available_at, d.outbox_id
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE outbox_deliveries d
SET available_at = now() + make_interval(secs => $3), tries = d.tries + 1
FROM due, outbox o
WHERE d.outbox_id = due.outbox_id AND d.target = due.target AND o.id = d.outbox_id
RETURNING d.outbox_id, d.target, d.tries, o.event_id, o.channel, o.topic, o.request_id,
          o.number, o.payload, o.created_at;

-- name: mark_delivered
UPDATE outbox_deliveries
SET delivered_at = now(), last_status = $3, last_error = NULL
WHERE outbox_id = $1 AND target = $2 AND delivered_at IS NULL AND given_up_at IS NULL;

-- name: mark_retry
UPDATE outbox_deliveries
SET available_at = now() + make_interval(secs => $3), last_error = $4, last_status = $5
WHERE outbox_id = $1 AND target = $2 AND delivered_at IS NULL AND given_up_at IS NULL;

-- name: mark_given_up
UPDATE outbox_deliveries
SET given_up_at = now(), last_error = $3, last_status = $4
WHERE outbox_id = $1 AND target = $2 AND delivered_at IS NULL AND given_up_at IS NULL;

-- name: next_due_in
-- Seconds until the next delivery for our targets falls due (NULL: none waiting).
SELECT GREATEST(0, EXTRACT(EPOCH FROM min(available_at) - now()))::float8
FROM outbox_deliveries
WHERE delivered_at IS NULL AND given_up_at IS NULL AND target = ANY ($1::text[]);
