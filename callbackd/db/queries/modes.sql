-- Dialer modes: "call now", assignment, client-first claims, caller-pays calls and reminder
-- calls (callbackd/services/{call_now,client_first,caller_pays,reminders}.py).

-- name: claim_client_first
-- The best due request of a client-first campaign (call-now asks first), marked dialing,
-- with its attempt. There is no operator leg of ours: both channel ids name the client's
-- channel callbackd originates ($4). Requests past the campaign's expiry are left to the
-- dialer's expire_requests (migration 0018).
WITH candidate AS (
    SELECT r.id
    FROM callback_requests r
    JOIN campaigns c ON c.id = r.campaign_id
    WHERE r.campaign_id = $1
      AND r.status = 'pending'
      AND (r.due_at <= now() OR r.call_now_requested_at IS NOT NULL)
      AND (c.expiry_seconds IS NULL
           OR extract(epoch FROM now() - r.created_at) <= c.expiry_seconds)
      AND NOT EXISTS (
          SELECT 1 FROM attempts a WHERE a.number = r.number AND a.state <> 'finished'
      )
    ORDER BY (r.call_now_requested_at IS NULL), r.priority DESC, r.due_at,
             r.first_joined_at NULLS LAST, r.id
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
), claimed AS (
    UPDATE callback_requests r
    SET status = 'dialing', call_now_requested_at = NULL, updated_at = now()
    FROM candidate c
    WHERE r.id = c.id
    RETURNING r.*
), attempt AS (
    INSERT INTO attempts (
        id, request_id, campaign_id, number, pbx, operator_interface,
        operator_channel_id, client_channel_id, claimed_by, state, created_at, mode
    )
    SELECT $2, claimed.id, claimed.campaign_id, claimed.number, $3, NULL, $4, $4, $5,
           'originating', clock_timestamp(), 'client_first'
    FROM claimed
    RETURNING *
)
SELECT to_jsonb(claimed.*) AS request, to_jsonb(attempt.*) AS attempt FROM claimed, attempt;

-- name: request_call_now
-- $2 NULL keeps the request's assignment (an assigned request goes only to its operator).
UPDATE callback_requests r
SET call_now_requested_at = clock_timestamp(),
    assigned_operator = COALESCE($2, r.assigned_operator),
    due_at = LEAST(r.due_at, now()),
    updated_at = now()
WHERE r.id = $1 AND r.status = 'pending'
RETURNING r.*;

-- name: assign_request
UPDATE callback_requests
SET assigned_operator = $2, updated_at = now()
WHERE id = $1 AND status = 'pending'
RETURNING *;

-- name: request_status
SELECT status FROM callback_requests WHERE id = $1;

-- name: claim_caller_pays
-- First sighting of (pbx, uniqueid) wins; a second sighting returns no row.
INSERT INTO caller_pays_calls (pbx, uniqueid, campaign, campaign_id, number, outcome)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (pbx, uniqueid) DO NOTHING
RETURNING pbx;

-- name: known_caller_pays_calls
-- Which of these Uniqueids ($2) of the PBX are stored already (queue_log replay).
SELECT uniqueid FROM caller_pays_calls WHERE pbx = $1 AND uniqueid = ANY ($2::text[]);

-- name: upsert_request_from_caller_pays
-- A number with an open request in the campaign is merged into it and becomes due now:
-- the caller asked again.
INSERT INTO callback_requests AS r (
    campaign_id, number, source, priority, due_at, first_joined_at, pbx, queue, uniqueid,
    linkedid
)
VALUES (
    $1, $2::text, 'caller_pays',
    $3 + callbackd_customer_priority($2::text),
    $4, $4, $5, $6, $7, $8
)
ON CONFLICT (campaign_id, number) WHERE status IN ('pending', 'dialing') DO UPDATE SET
    due_at     = LEAST(r.due_at, excluded.due_at),
    uniqueid   = excluded.uniqueid,
    linkedid   = excluded.linkedid,
    updated_at = now()
RETURNING r.*, (xmax = 0) AS created;

-- name: link_caller_pays
UPDATE caller_pays_calls SET request_id = $3, outcome = $4 WHERE pbx = $1 AND uniqueid = $2;

-- name: reminder_candidates
-- Operators ($2) with pending requests of the campaign assigned to them, of which at least
-- one is older than $3; with how many wait in all.
SELECT assigned_operator AS operator, count(*) AS pending
FROM callback_requests
WHERE campaign_id = $1 AND status = 'pending' AND assigned_operator = ANY ($2::text[])
GROUP BY assigned_operator
HAVING min(created_at) <= now() - $3::interval;

-- name: claim_reminder
-- One reminder per operator per interval ($6), whichever instance asks: the upsert takes
-- the operator's row lock, and a second asker re-checks the time after the first one's
-- commit and gets no row. The reminder's id and ChannelId are ours ($1, $4).
WITH slot AS (
    INSERT INTO operator_reminders AS o (pbx, operator_interface, last_reminded_at,
                                         last_reminder_id)
    VALUES ($2, $3, clock_timestamp(), $1)
    ON CONFLICT (pbx, operator_interface) DO UPDATE
        SET last_reminded_at = excluded.last_reminded_at,
            last_reminder_id = excluded.last_reminder_id
        WHERE o.last_reminded_at <= clock_timestamp() - $6::interval
    RETURNING o.last_reminder_id
)
INSERT INTO reminder_calls (id, channel_id, pbx, operator_interface, campaign_id,
                            pending_count, claimed_by)
SELECT $1, $4, $2, $3, $5, $7, $8 FROM slot
RETURNING *;

-- name: finish_reminder
UPDATE reminder_calls SET outcome = $2, ended_at = clock_timestamp()
WHERE id = $1 AND outcome IS NULL
RETURNING *;

-- name: reminder_heard
UPDATE reminder_calls SET heard_at = clock_timestamp()
WHERE id = $1 AND heard_at IS NULL
RETURNING *;
