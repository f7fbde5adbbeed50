-- The claim as a function, so that capture can claim in the same round trip.
--
-- Path (b) of the reaction time: a caller abandons while an operator of the queue is free.
-- It took two round trips in a row, capture (0010) and then the dialer's claim, each with
-- its commit. Now the dialer offers capture a free operator; capture stores the abandon and
-- claims for that operator in ONE statement, callbackd_capture_and_claim. The dialer's own
-- claim (callbackd/db/queries/dialer.sql, claim_for_operator) calls the same function, so
-- there is one claim, whichever path runs it.

-- The dialer's claim for one free operator, unchanged from claim_for_operator before this
-- migration: pick a due request no call is in flight for, lock it (skipping rows another
-- instance holds), mark it dialing, and write the attempt with the channel ids the Originate
-- will use. "Call now" requests first; then, when p_ordinary (not CRM-task mode), priority,
-- due time, original join time. The ordinary branch only runs when the call-now branch
-- found nothing (LIMIT 1 over UNION ALL stops at the first row), so it locks nothing it
-- does not claim. The partial unique indexes on attempts refuse a second in-flight call to
-- the same number or operator (unique_violation, raised to the caller).
-- Returns one row (request, attempt), or none when nothing is due for the operator.
CREATE FUNCTION callbackd_claim_for_operator(
    p_campaign_id bigint,
    p_attempt_id uuid,
    p_pbx text,
    p_operator text,
    p_operator_channel text,
    p_client_channel text,
    p_instance text,
    p_ordinary boolean
) RETURNS TABLE (request jsonb, attempt jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH candidate AS (
        SELECT pick.id, pick.call_now
        FROM (
            SELECT now_pick.id, true AS call_now
            FROM (
                SELECT r.id
                FROM callback_requests r
                WHERE r.campaign_id = p_campaign_id
                  AND r.status = 'pending'
                  AND r.call_now_requested_at IS NOT NULL
                  AND (r.assigned_operator IS NULL OR r.assigned_operator = p_operator)
                  AND NOT EXISTS (
                      SELECT 1 FROM attempts a WHERE a.number = r.number AND a.state <> 'finished'
                  )
                  AND (r.assigned_operator IS NOT NULL OR NOT EXISTS (
                      SELECT 1 FROM attempts a
                      WHERE a.request_id = r.id AND a.operator_interface = p_operator
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
                WHERE p_ordinary::boolean
                  AND r.campaign_id = p_campaign_id
                  AND r.status = 'pending'
                  AND r.due_at <= now()
                  AND (r.assigned_operator IS NULL OR r.assigned_operator = p_operator)
                  AND NOT EXISTS (
                      SELECT 1 FROM attempts a WHERE a.number = r.number AND a.state <> 'finished'
                  )
                  AND NOT EXISTS (
                      SELECT 1 FROM attempts a
                      WHERE a.request_id = r.id AND a.operator_interface = p_operator
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
        SELECT p_attempt_id, claimed.id, claimed.campaign_id, claimed.number, p_pbx, p_operator, p_operator_channel, p_client_channel, p_instance,
               'originating', clock_timestamp()
        FROM claimed
        RETURNING *
    )
    SELECT to_jsonb(claimed.*), to_jsonb(attempt.*) FROM claimed, attempt;
END
$$;

-- Capture (callbackd_capture_abandon, unchanged) and, when it stored something, the claim for
-- the operator the dialer offered, in one transaction. A claim the database refuses (the
-- operator or the number has a call in flight elsewhere, or a number that is not E.164) is
-- undone on its own and reported; the abandon stays stored either way. The result is
-- capture's, plus "claim" (the claim, or null when nothing was due for the operator) or
-- "claim_refused" (sqlstate and constraint). NULL: a duplicate sighting, nothing changed.
CREATE FUNCTION callbackd_capture_and_claim(
    p_pbx text,
    p_uniqueid text,
    p_queue text,
    p_campaign_id bigint,
    p_number text,
    p_priority integer,
    p_due_at timestamptz,
    p_joined_at timestamptz,
    p_abandoned_at timestamptz,
    p_caller_name text,
    p_position integer,
    p_original_position integer,
    p_hold_seconds integer,
    p_linkedid text,
    p_attempt_id uuid,
    p_operator text,
    p_operator_channel text,
    p_client_channel text,
    p_instance text
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    captured jsonb;
    claim jsonb;
    refused_constraint text;
BEGIN
    captured := callbackd_capture_abandon(
        p_pbx, p_uniqueid, p_queue, p_campaign_id, p_number, p_priority, p_due_at,
        p_joined_at, p_abandoned_at, p_caller_name, p_position, p_original_position,
        p_hold_seconds, p_linkedid
    );
    IF captured IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        SELECT jsonb_build_object('request', c.request, 'attempt', c.attempt) INTO claim
        FROM callbackd_claim_for_operator(
            p_campaign_id, p_attempt_id, p_pbx, p_operator, p_operator_channel,
            p_client_channel, p_instance, true
        ) AS c;
    EXCEPTION WHEN unique_violation OR check_violation THEN
        GET STACKED DIAGNOSTICS refused_constraint = CONSTRAINT_NAME;
        RETURN captured || jsonb_build_object(
            'claim_refused',
            jsonb_build_object('sqlstate', SQLSTATE, 'constraint', refused_constraint)
        );
    END;
    RETURN captured || jsonb_build_object('claim', claim);
END
$$;
