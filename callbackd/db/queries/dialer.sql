-- The dialer (callbackd/services/dialer.py).

-- name: register_instance
INSERT INTO instances (name, hostname, pid) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
    SET hostname = excluded.hostname, pid = excluded.pid, started_at = now(), heartbeat_at = now();

-- name: heartbeat
WITH me AS (
    UPDATE instances SET heartbeat_at = now() WHERE name = $1 RETURNING name
)
UPDATE attempts SET heartbeat_at = now()
WHERE claimed_by = $1 AND state <> 'finished' AND EXISTS (SELECT 1 FROM me);

-- name: adopt_orphans
-- In-flight attempts of this instance's previous life, or of instances whose heartbeat
-- stopped: this instance takes them over and reconciles them with Asterisk.
UPDATE attempts SET claimed_by = $1, heartbeat_at = now()
WHERE state <> 'finished'
  AND (claimed_by = $1
       OR claimed_by IN (SELECT name FROM instances WHERE name <> $1 AND heartbeat_at < now() - $2::interval)
       OR claimed_by NOT IN (SELECT name FROM instances))
RETURNING *;

-- name: adopt_dead_instances
-- While running: in-flight attempts of OTHER instances whose heartbeat stopped (or that are
-- not registered at all), of the campaigns and PBXs this instance dials ($3, $4): another
-- configuration's calls are left to an instance that can follow them. The row lock makes
-- the takeover exclusive: a second live instance re-checks the row after the first one's
-- commit, finds a live owner and leaves it.
UPDATE attempts SET claimed_by = $1, heartbeat_at = now()
WHERE state <> 'finished'
  AND claimed_by <> $1
  AND campaign_id = ANY ($3::bigint[])
  AND pbx = ANY ($4::text[])
  AND (claimed_by IN (SELECT name FROM instances WHERE name <> $1 AND heartbeat_at < now() - $2::interval)
       OR claimed_by NOT IN (SELECT name FROM instances))
RETURNING *;

-- name: adopt_untracked
-- In-flight attempts this instance owns but does not follow ($3: the ones it follows): a
-- claim whose reply never arrived (a timeout after the server had committed it) or whose
-- call was never placed. Only those claimed more than $2 ago, so a claim whose reply is on
-- its way is not taken; of the campaigns and PBXs this dialer dials ($4, $5).
SELECT * FROM attempts
WHERE claimed_by = $1
  AND state <> 'finished'
  AND created_at < now() - $2::interval
  AND id <> ALL ($3::uuid[])
  AND campaign_id = ANY ($4::bigint[])
  AND pbx = ANY ($5::text[]);

-- name: set_attempt_state
UPDATE attempts
SET state = $2::text,
    stage = COALESCE($3, stage),
    operator_answered_at = CASE WHEN $2::text = 'operator_answered' AND operator_answered_at IS NULL
                                THEN now() ELSE operator_answered_at END,
    client_answered_at = CASE WHEN $2::text = 'bridged' AND client_answered_at IS NULL
                              THEN now() ELSE client_answered_at END
WHERE id = $1 AND state <> 'finished';

-- name: finish_attempt
UPDATE attempts
SET state = 'finished', outcome = $2, dial_status = $3, hangup_by = $4, talk_seconds = $5,
    stage = COALESCE($6, stage), ended_at = clock_timestamp(), detail = detail || $7::jsonb
WHERE id = $1 AND state <> 'finished'
RETURNING *;

-- name: reschedule_request
UPDATE callback_requests
SET status = 'pending', due_at = $2, client_attempts = client_attempts + $3,
    operator_declines = operator_declines + $4, status_reason = $5, updated_at = now()
WHERE id = $1 AND status = 'dialing'
RETURNING *;

-- name: close_request
UPDATE callback_requests
SET status = $2, status_reason = $3, client_attempts = client_attempts + $4,
    closed_at = now(), updated_at = now()
WHERE id = $1 AND status = 'dialing'
RETURNING *;

-- name: get_request
SELECT * FROM callback_requests WHERE id = $1;

-- name: client_attempts_since
SELECT count(*) FROM attempts
WHERE number = $1 AND created_at >= $2
  AND outcome IN ('completed', 'busy', 'no_answer', 'congestion', 'unavailable', 'short_call',
                  'client_declined', 'unknown');

-- name: fail_unusable_request
-- A request whose number cannot be dialled (stored by hand, bypassing callbackd's checks).
UPDATE callback_requests
SET status = 'failed', status_reason = $2, closed_at = now(), updated_at = now()
WHERE id = (
    SELECT id FROM callback_requests
    WHERE campaign_id = $1 AND status = 'pending' AND due_at <= now()
      AND number !~ '^\+[1-9][0-9]{5,14}$'
    ORDER BY priority DESC, due_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, number;

-- name: next_due_joined
-- When the caller of the campaign's next callback (claim_for_operator's order) first joined the
-- queue: interleaving callbacks with live callers compares it with theirs.
SELECT r.first_joined_at FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id
WHERE r.campaign_id = $1 AND r.status = 'pending' AND r.due_at <= now()
  AND (c.expiry_seconds IS NULL OR extract(epoch FROM now() - r.created_at) <= c.expiry_seconds)
ORDER BY r.priority DESC, r.due_at, r.first_joined_at NULLS LAST, r.id
LIMIT 1;

-- name: expire_requests
-- Pending requests of these campaigns ($1) past their campaign's expiry (migration 0018),
-- closed as expired: the claims already skip them; this gives them their status (and the
-- callback.expired event) whether or not an operator is free. Rows another transaction is
-- claiming or changing are left for the next pass.
UPDATE callback_requests r
SET status = 'expired', status_reason = 'past_expiry', closed_at = now(), updated_at = now()
WHERE r.id IN (
    SELECT p.id FROM callback_requests p JOIN campaigns c ON c.id = p.campaign_id
    WHERE p.campaign_id = ANY ($1::bigint[]) AND p.status = 'pending'
      AND extract(epoch FROM now() - p.created_at) > c.expiry_seconds
    FOR UPDATE OF p SKIP LOCKED
)
RETURNING r.id, r.campaign_id, r.number, r.created_at;

-- name: claim_for_operator
-- The dialer's claim for one free operator ($4), in ONE statement (one round trip per
-- reaction): the function of migration 0011 (what it picks, in which order, and what the
-- database refuses is documented there), as 0016 rewrote it (json columns). Capture runs
-- the same function after storing an abandon when the dialer offered it a free operator
-- (capture.sql, capture_and_claim). No row: nothing is due for this operator.
SELECT request, attempt FROM callbackd_claim_for_operator($1, $2, $3, $4, $5, $6, $7, $8);
