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

-- name: prune_finished
-- Retention (callbackd/services/outbox_retention.py): one bounded batch of the walk over
-- events older than $3 days, in (created_at, id) order after the cursor ($1, $2; NULL to
-- start), on index outbox_created_at (0013). Of the batch, deletes the finished rows: fanned
-- out, no delivery still pending (their deliveries go with them, ON DELETE CASCADE) and,
-- for an SMS, its quiet window over: the row is what keeps the next SMS to that number out
-- (exclusion constraint outbox_sms_once_per_window). SKIP LOCKED: a row another pruner holds
-- is its to delete, so two pruners neither wait for each other nor count a row twice.
-- Returns the walk's new cursor and how many rows it read (fewer than $4: the walk is over).
WITH scanned AS (
    SELECT o.id, o.created_at
    FROM outbox o
    WHERE (o.created_at, o.id) > (COALESCE($1::timestamptz, '-infinity'), COALESCE($2::bigint, 0))
      AND o.created_at < now() - make_interval(days => $3)
    ORDER BY o.created_at, o.id
    LIMIT $4
), finished AS (
    SELECT o.id, o.channel
    FROM outbox o
    JOIN scanned s ON s.id = o.id
    WHERE o.fanned_out_at IS NOT NULL
      AND (o.channel <> 'sms' OR o.quiet_until <= now())
      AND NOT EXISTS (
          SELECT 1 FROM outbox_deliveries d
          WHERE d.outbox_id = o.id AND d.delivered_at IS NULL AND d.given_up_at IS NULL)
    FOR UPDATE OF o SKIP LOCKED
), deliveries AS (
    SELECT count(*) AS n
    FROM outbox_deliveries d
    JOIN finished f ON f.id = d.outbox_id
), deleted AS (
    DELETE FROM outbox o
    USING finished f
    WHERE o.id = f.id
    RETURNING o.channel
)
SELECT
    (SELECT count(*) FROM scanned)::int AS scanned,
    (SELECT count(*) FROM deleted WHERE channel = 'event')::int AS events,
    (SELECT count(*) FROM deleted WHERE channel = 'sms')::int AS sms,
    (SELECT n FROM deliveries)::int AS deliveries,
    last.created_at AS last_created_at,
    last.id AS last_id
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT s.created_at, s.id FROM scanned s ORDER BY s.created_at DESC, s.id DESC LIMIT 1
) AS last ON true;
