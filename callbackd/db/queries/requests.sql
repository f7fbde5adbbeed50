-- Callback requests as the API and the CLI see them (callbackd/services/requests.py).

-- name: campaign_by_name
SELECT id, name, pbx, queue FROM campaigns WHERE name = $1;

-- name: insert_request
-- A new request from the CRM or the CLI. A number with an open request in the campaign is
-- not merged: the caller is told which request already exists.
-- Priority: the given one, else the campaign's plus the customer's.
INSERT INTO callback_requests (
    campaign_id, number, source, priority, due_at, preferred_at, external_id, note,
    assigned_operator, pbx, queue, first_joined_at
)
VALUES (
    $1, $2::text, $3,
    COALESCE($4::integer, $5::integer + callbackd_customer_priority($2::text)),
    GREATEST(now(), COALESCE($6::timestamptz, now())), $6, $7, $8, $9, $10, $11, now()
)
ON CONFLICT (campaign_id, number) WHERE status IN ('pending', 'dialing') DO NOTHING
RETURNING *;

-- name: open_request_for
SELECT id FROM callback_requests
WHERE campaign_id = $1 AND number = $2 AND status IN ('pending', 'dialing');

-- name: get_request
SELECT r.*, c.name AS campaign_name
FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id
WHERE r.id = $1;

-- name: lock_request
-- Row lock for a pending-only change: the dialer's claim (FOR UPDATE SKIP LOCKED) passes
-- this row by while it is held, so a request is either changed here or claimed, never both.
SELECT id, status FROM callback_requests WHERE id = $1 FOR UPDATE;

-- name: attempts_of
SELECT * FROM attempts WHERE request_id = $1 ORDER BY created_at, id;

-- name: list_requests
-- Newest first; keyset pagination on id ($6: the last id of the previous page).
SELECT r.*, c.name AS campaign_name
FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id
WHERE ($1::text[] IS NULL OR r.status = ANY ($1))
  AND ($2::text IS NULL OR c.name = $2)
  AND ($3::text IS NULL OR r.number = $3)
  AND ($4::timestamptz IS NULL OR r.created_at >= $4)
  AND ($5::timestamptz IS NULL OR r.created_at < $5)
  AND ($6::bigint IS NULL OR r.id < $6)
ORDER BY r.id DESC
LIMIT $7;

-- name: cancel_request
UPDATE callback_requests
SET status = 'cancelled', status_reason = $2, closed_at = now(), updated_at = now(),
    call_now_requested_at = NULL
WHERE id = $1 AND status = 'pending'
RETURNING id;

-- name: reschedule_request
UPDATE callback_requests
SET due_at = GREATEST(now(), $2::timestamptz), preferred_at = $2, call_now_requested_at = NULL,
    updated_at = now()
WHERE id = $1 AND status = 'pending'
RETURNING id;

-- name: count_by_status
SELECT c.name AS campaign, r.status, count(*) AS requests
FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id
GROUP BY c.name, r.status
ORDER BY c.name, r.status;

-- name: oldest_pending
SELECT c.name AS campaign, min(r.created_at) AS oldest
FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id
WHERE r.status = 'pending'
GROUP BY c.name;

-- name: idempotency_expire
DELETE FROM api_idempotency_keys
WHERE client = $1 AND key = $2 AND created_at < now() - make_interval(secs => $3);

-- name: idempotency_claim
-- The first request with this key inserts the row; a concurrent one waits here for that
-- transaction and then gets no row back.
INSERT INTO api_idempotency_keys (client, key, fingerprint) VALUES ($1, $2, $3)
ON CONFLICT (client, key) DO NOTHING
RETURNING key;

-- name: idempotency_get
SELECT * FROM api_idempotency_keys WHERE client = $1 AND key = $2;

-- name: idempotency_store
UPDATE api_idempotency_keys
SET request_id = $3, response_status = $4, response_body = $5
WHERE client = $1 AND key = $2;

-- name: idempotency_purge
-- Keys past their retention, a batch at a time (the periodic purge repeats until none are left).
DELETE FROM api_idempotency_keys
WHERE ctid IN (
    SELECT ctid FROM api_idempotency_keys
    WHERE created_at < now() - make_interval(secs => $1)
    LIMIT $2
);
