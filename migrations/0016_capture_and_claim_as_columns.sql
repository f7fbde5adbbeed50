-- Capture and claim return their rows as json columns, built once.
--
-- An instruction count of callbackd_capture_and_claim (path (b) of the reaction time:
-- PostgreSQL under callgrind, per call) found about a fifth of it building JSON: the
-- request row as jsonb, merged with "created" (a jsonb concatenation rebuilds the whole
-- value), the claim's request and attempt rows as jsonb, both copied into one object, and
-- that merged into the result again; every jsonb value also sorts its keys. The values are
-- only read by the daemon, so
--   * the three functions now return columns: capture (request json, created boolean), the
--     claim (request json, attempt json) as before but json, and capture-and-claim
--     (request, created, claim, claim_refused);
--   * each row becomes JSON once, with to_json (text, in column order: no sorting), and
--     json_build_object embeds those values without parsing them again;
--   * the claim runs as plain statements (call-now pick, ordinary pick when that found
--     nothing, update, insert) instead of one statement of three CTEs over a UNION ALL:
--     PostgreSQL sets up a smaller plan for each, and the ordinary pick only runs when it
--     is needed, as before.
-- What is picked, in which order, what is locked and what the database refuses are
-- unchanged (migration 0011 documents them). The daemon's queries select the columns by
-- name (callbackd/db/queries/capture.sql, dialer.sql).

DROP FUNCTION callbackd_capture_and_claim(text, text, text, bigint, text, integer, timestamptz,
    timestamptz, timestamptz, text, integer, integer, integer, text, uuid, text, text, text, text);
DROP FUNCTION callbackd_capture_abandon(text, text, text, bigint, text, integer, timestamptz,
    timestamptz, timestamptz, text, integer, integer, integer, text);
DROP FUNCTION callbackd_claim_for_operator(bigint, uuid, text, text, text, text, text, boolean);

-- The dialer's claim for one free operator (0011's, as plain statements; see above).
-- One row (request, attempt), or none when nothing is due for the operator.
CREATE FUNCTION callbackd_claim_for_operator(
    p_campaign_id bigint,
    p_attempt_id uuid,
    p_pbx text,
    p_operator text,
    p_operator_channel text,
    p_client_channel text,
    p_instance text,
    p_ordinary boolean
) RETURNS TABLE (request json, attempt json) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    picked bigint;
    call_now boolean := true;
    claimed callback_requests;
    started attempts;
BEGIN
    SELECT r.id INTO picked
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
    FOR UPDATE OF r SKIP LOCKED;
    IF picked IS NULL AND p_ordinary THEN
        call_now := false;
        SELECT r.id INTO picked
        FROM callback_requests r
        WHERE r.campaign_id = p_campaign_id
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
        FOR UPDATE OF r SKIP LOCKED;
    END IF;
    IF picked IS NULL THEN
        RETURN;
    END IF;
    UPDATE callback_requests r
    SET status = 'dialing',
        call_now_requested_at = CASE WHEN call_now THEN NULL ELSE r.call_now_requested_at END,
        updated_at = now()
    WHERE r.id = picked
    RETURNING r.* INTO claimed;
    INSERT INTO attempts (
        id, request_id, campaign_id, number, pbx, operator_interface,
        operator_channel_id, client_channel_id, claimed_by, state, created_at
    )
    VALUES (
        p_attempt_id, claimed.id, claimed.campaign_id, claimed.number, p_pbx, p_operator,
        p_operator_channel, p_client_channel, p_instance, 'originating', clock_timestamp()
    )
    RETURNING * INTO started;
    request := to_json(claimed);
    attempt := to_json(started);
    RETURN NEXT;
END
$$;

-- Capture (0014's, unchanged but for its result): no row for a duplicate sighting.
CREATE FUNCTION callbackd_capture_abandon(
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
    p_linkedid text
) RETURNS TABLE (request json, created boolean) LANGUAGE plpgsql AS $$
#variable_conflict use_column
<<capture>>
DECLARE
    request_id bigint;
BEGIN
    -- The events this transaction writes are announced by the capturing daemon itself.
    PERFORM set_config('callbackd.outbox_wake', 'in_process', true);
    INSERT INTO queue_abandons (pbx, uniqueid, queue, number, outcome, abandoned_at)
    VALUES (p_pbx, p_uniqueid, p_queue, p_number, 'stored', p_abandoned_at)
    ON CONFLICT (pbx, uniqueid) DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- A number with an open request in the campaign is merged into it: one more abandon, the
    -- latest call's details, and the earliest join time so the caller keeps their place.
    INSERT INTO callback_requests AS r (
        campaign_id, number, source, priority, due_at, first_joined_at, abandon_count,
        last_abandon_at, pbx, queue, caller_name, position, original_position, hold_seconds,
        uniqueid, linkedid
    )
    VALUES (
        p_campaign_id, p_number, 'abandon',
        p_priority + COALESCE((SELECT c.priority FROM customers c WHERE c.number = p_number), 0),
        p_due_at, p_joined_at, 1, p_abandoned_at, p_pbx, p_queue, p_caller_name, p_position,
        p_original_position, p_hold_seconds, p_uniqueid, p_linkedid
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
    RETURNING to_json(r.*), (r.xmax = 0), r.id INTO request, created, request_id;
    UPDATE queue_abandons
    SET request_id = capture.request_id, outcome = CASE WHEN created THEN 'stored' ELSE 'merged' END
    WHERE pbx = p_pbx AND uniqueid = p_uniqueid;
    RETURN NEXT;
END
$$;

-- Capture and, when it stored something, the claim for the operator the dialer offered, in
-- one transaction (0011's, unchanged but for its result). A claim the database refuses is
-- undone on its own and reported in claim_refused; the abandon stays stored either way.
-- claim is null when nothing was due for the operator. No row: a duplicate sighting.
CREATE FUNCTION callbackd_capture_and_claim(
    p_pbx text, p_uniqueid text, p_queue text, p_campaign_id bigint, p_number text,
    p_priority integer, p_due_at timestamptz, p_joined_at timestamptz, p_abandoned_at timestamptz,
    p_caller_name text, p_position integer, p_original_position integer, p_hold_seconds integer,
    p_linkedid text, p_attempt_id uuid, p_operator text, p_operator_channel text,
    p_client_channel text, p_instance text
) RETURNS TABLE (request json, created boolean, claim json, claim_refused json)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    refused_constraint text;
BEGIN
    SELECT c.request, c.created INTO request, created
    FROM callbackd_capture_abandon(
        p_pbx, p_uniqueid, p_queue, p_campaign_id, p_number, p_priority, p_due_at,
        p_joined_at, p_abandoned_at, p_caller_name, p_position, p_original_position,
        p_hold_seconds, p_linkedid
    ) AS c;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    BEGIN
        SELECT json_build_object('request', c.request, 'attempt', c.attempt) INTO claim
        FROM callbackd_claim_for_operator(
            p_campaign_id, p_attempt_id, p_pbx, p_operator, p_operator_channel,
            p_client_channel, p_instance, true
        ) AS c;
    EXCEPTION WHEN unique_violation OR check_violation THEN
        GET STACKED DIAGNOSTICS refused_constraint = CONSTRAINT_NAME;
        claim := NULL;
        claim_refused := json_build_object('sqlstate', SQLSTATE, 'constraint', refused_constraint);
    END;
    RETURN NEXT;
END
$$;
