-- Abandoned callers -> callback requests (callbackd/services/capture.py).

-- name: claim_abandon
-- First sighting of (pbx, uniqueid) wins; a second sighting returns no row.
INSERT INTO queue_abandons (pbx, uniqueid, queue, number, outcome, abandoned_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (pbx, uniqueid) DO NOTHING
RETURNING pbx;

-- name: upsert_request_from_abandon
-- A number with an open request in the campaign is merged into it: one more abandon, the
-- latest call's details, and the earliest join time so the caller keeps their place.
INSERT INTO callback_requests AS r (
    campaign_id, number, source, priority, due_at, first_joined_at, abandon_count,
    last_abandon_at, pbx, queue, caller_name, position, original_position, hold_seconds,
    uniqueid, linkedid
)
VALUES (
    $1, $2, 'abandon',
    $3 + COALESCE((SELECT c.priority FROM customers c WHERE c.number = $2), 0),
    $4, $5, 1, $6, $7, $8, $9, $10, $11, $12, $13, $14
)
ON CONFLICT (campaign_id, number) WHERE status IN ('pending', 'dialing') DO UPDATE SET
    abandon_count     = r.abandon_count + 1,
    last_abandon_at   = GREATEST(r.last_abandon_at, excluded.last_abandon_at),
    first_joined_at   = LEAST(r.first_joined_at, excluded.first_joined_at),
    pbx               = excluded.pbx,
    queue             = excluded.queue,
    caller_name       = COALESCE(excluded.caller_name, r.caller_name),
    position          = excluded.position,
    original_position = excluded.original_position,
    hold_seconds      = excluded.hold_seconds,
    uniqueid          = excluded.uniqueid,
    linkedid          = excluded.linkedid,
    updated_at        = now()
RETURNING r.*, (xmax = 0) AS created;

-- name: link_abandon
UPDATE queue_abandons SET request_id = $3, outcome = $4 WHERE pbx = $1 AND uniqueid = $2;

-- name: latest_abandon_at
SELECT max(abandoned_at) FROM queue_abandons WHERE pbx = $1;

-- name: resolve_inbound
-- The caller reached an operator through the queue: pending requests for the number are
-- closed. Requests being dialled right now are left to the dialer.
UPDATE callback_requests
SET status = 'resolved_inbound', status_reason = $3, closed_at = now(), updated_at = now()
WHERE number = $1 AND status = 'pending' AND ($2::bigint[] IS NULL OR campaign_id = ANY ($2))
RETURNING *;

-- name: mark_inbound_while_dialing
-- A request being dialled right now is closed by the dialer when its attempt ends.
UPDATE callback_requests SET resolved_inbound_at = now(), updated_at = now()
WHERE number = $1 AND status = 'dialing' AND resolved_inbound_at IS NULL
  AND ($2::bigint[] IS NULL OR campaign_id = ANY ($2))
RETURNING id;

-- name: record_interaction
INSERT INTO interactions (number, pbx, queue, operator_interface, source, uniqueid, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (pbx, uniqueid, operator_interface) WHERE uniqueid IS NOT NULL DO NOTHING
RETURNING id;
