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

-- name: set_attempt_state
UPDATE attempts
SET state = $2,
    stage = COALESCE($3, stage),
    operator_answered_at = CASE WHEN $2 = 'operator_answered' AND operator_answered_at IS NULL
                                THEN now() ELSE operator_answered_at END,
    client_answered_at = CASE WHEN $2 = 'bridged' AND client_answered_at IS NULL
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
SELECT first_joined_at FROM callback_requests
WHERE campaign_id = $1 AND status = 'pending' AND due_at <= now()
ORDER BY priority DESC, due_at, first_joined_at NULLS LAST, id
LIMIT 1;

-- name: claim_for_operator
-- The dialer's claim for one free operator ($4), in ONE statement (one round trip per
-- reaction): pick a due request no call is in flight for, lock it (skipping rows another
-- instance holds), mark it dialing, and write the attempt with the channel ids we will give
-- the Originate. First a "call now" request (whatever its due time; an assigned one only for
-- its operator), then, when $8 (not CRM-task mode), the campaign's ordinary order: priority,
-- due time, original join time. The ordinary branch only runs when the call-now branch found
-- nothing (LIMIT 1 over UNION ALL stops at the first row), so it locks nothing it does not
-- claim; the call-now ask is cleared only when that branch claimed the request. The partial
-- unique indexes on attempts refuse a second in-flight call to the same number or operator,
-- whoever tries.
WITH candidate AS (
    SELECT pick.id, pick.call_now
    FROM (
        SELECT now_pick.id, true AS call_now
        FROM (
            SELECT r.id
            FROM callback_requests r
            WHERE r.campaign_id = $1
              AND r.status = 'pending'
              AND r.call_now_requested_at IS NOT NULL
              AND (r.assigned_operator IS NULL OR r.assigned_operator = $4)
              AND NOT EXISTS (
                  SELECT 1 FROM attempts a WHERE a.number = r.number AND a.state <> 'finished'
              )
              AND (r.assigned_operator IS NOT NULL OR NOT EXISTS (
                  SELECT 1 FROM attempts a
                  WHERE a.request_id = r.id AND a.operator_interface = $4
                    AND a.outcome IN ('operator_declined', 'operator_no_answer', 'operator_busy')
                    AND a.ended_at > now() - interval '10 minutes'
              ))
            ORDER BY (r.assigned_operator IS NULL), r.call_now_requested_at, r.id
            LIMIT 1
            FOR UPDATE OF r SKIP LOCKED
        ) now_pick
        UNION ALL
        SELECT next_pick.id, false AS call_now
        FROM (
            SELECT r.id
            FROM callback_requests r
            WHERE $8::boolean
              AND r.campaign_id = $1
              AND r.status = 'pending'
              AND r.due_at <= now()
              AND (r.assigned_operator IS NULL OR r.assigned_operator = $4)
              AND NOT EXISTS (
                  SELECT 1 FROM attempts a WHERE a.number = r.number AND a.state <> 'finished'
              )
              AND NOT EXISTS (
                  SELECT 1 FROM attempts a
                  WHERE a.request_id = r.id AND a.operator_interface = $4
                    AND a.outcome IN ('operator_declined', 'operator_no_answer', 'operator_busy')
                    AND a.ended_at > now() - interval '10 minutes'
              )
            ORDER BY r.priority DESC, r.due_at, r.first_joined_at NULLS LAST, r.id
            LIMIT 1
            FOR UPDATE OF r SKIP LOCKED
        ) next_pick
    ) pick
    LIMIT 1
), claimed AS (
    UPDATE callback_requests r
    SET status = 'dialing',
        call_now_requested_at = CASE WHEN c.call_now THEN NULL ELSE r.call_now_requested_at END,
        updated_at = now()
    FROM candidate c
    WHERE r.id = c.id
    RETURNING r.*
), attempt AS (
    INSERT INTO attempts (
        id, request_id, campaign_id, number, pbx, operator_interface,
        operator_channel_id, client_channel_id, claimed_by, state, created_at
    )
    SELECT $2, claimed.id, claimed.campaign_id, claimed.number, $3, $4, $5, $6, $7,
           'originating', clock_timestamp()
    FROM claimed
    RETURNING *
)
SELECT to_jsonb(claimed.*) AS request, to_jsonb(attempt.*) AS attempt FROM claimed, attempt;
