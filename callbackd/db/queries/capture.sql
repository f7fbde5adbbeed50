-- Abandoned callers -> callback requests (callbackd/services/capture.py).

-- name: claim_abandon
-- First sighting of (pbx, uniqueid) wins; a second sighting returns no row.
INSERT INTO queue_abandons (pbx, uniqueid, queue, number, outcome, abandoned_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (pbx, uniqueid) DO NOTHING
RETURNING pbx;

-- name: capture_abandon
-- Claim (pbx, uniqueid), create or merge the number's open request of the campaign, link the
-- abandon to it: one round trip (migration 0010). The request row as JSON and whether it was
-- created (migration 0016); no row: a duplicate sighting, nothing changed.
SELECT request, created FROM callbackd_capture_abandon(
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
);

-- name: known_abandons
-- Which of these Uniqueids ($2) of the PBX were seen already, stored or not (queue_log
-- replay: one query instead of one capture statement per replayed line).
SELECT uniqueid FROM queue_abandons WHERE pbx = $1 AND uniqueid = ANY ($2::text[]);

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

-- name: capture_and_claim
-- capture_abandon, then the dialer's claim for the free operator it offered ($16), in one
-- round trip (migration 0011): the abandon's callback can start without a second one.
-- capture_abandon's columns, plus the claim (request and attempt) or why it was refused.
SELECT request, created, claim, claim_refused FROM callbackd_capture_and_claim(
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19
);
