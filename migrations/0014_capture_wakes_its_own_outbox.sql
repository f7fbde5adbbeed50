-- Capture announces its outbox events to its own daemon, not through a NOTIFY.
--
-- Path (b) of the reaction time: an abandon stored and claimed in one statement (0011). Its
-- callback.created event made the request trigger NOTIFY callbackd_outbox at commit, so a
-- listening backend woke, and the daemon's outbox listener woke and ran, in the very
-- milliseconds the daemon was reading the claim and sending the Originate. A trace of the
-- daemon saw that wake-up ahead of the claim's result in 18 of 20 abandons.
--
-- callbackd_capture_abandon now marks its transaction (a transaction-local setting,
-- callbackd.outbox_wake = in_process) and the request trigger leaves the NOTIFY out for a
-- marked transaction. The daemon that captured wakes its own outbox worker once the call is
-- placed (callbackd/services/capture.py, on_events_written); another instance's worker finds
-- the event at its next poll. Every other writer (HTTP API, CLI, psql, the dialer closing a
-- request) is unmarked and notifies exactly as before. The function body is 0010's with the
-- one marked line added.

CREATE OR REPLACE FUNCTION callbackd_capture_abandon(
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
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    request jsonb;
    created boolean;
BEGIN
    -- The events this transaction writes are announced by the capturing daemon itself.
    PERFORM set_config('callbackd.outbox_wake', 'in_process', true);
    INSERT INTO queue_abandons (pbx, uniqueid, queue, number, outcome, abandoned_at)
    VALUES (p_pbx, p_uniqueid, p_queue, p_number, 'stored', p_abandoned_at)
    ON CONFLICT (pbx, uniqueid) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;
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
    RETURNING to_jsonb(r.*), (r.xmax = 0) INTO request, created;
    UPDATE queue_abandons
    SET request_id = (request ->> 'id')::bigint, outcome = CASE WHEN created THEN 'stored' ELSE 'merged' END
    WHERE pbx = p_pbx AND uniqueid = p_uniqueid;
    RETURN request || jsonb_build_object('created', created);
END
$$;

-- 0009's trigger function; only the NOTIFY is now conditional.
CREATE OR REPLACE FUNCTION callbackd_request_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    topic text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        topic := 'callback.created';
    ELSE
        topic := 'callback.' || NEW.status;
    END IF;
    INSERT INTO outbox (channel, topic, request_id, campaign_id, payload)
    VALUES ('event', topic, NEW.id, NEW.campaign_id,
            callbackd_request_event_payload(NEW)
                || jsonb_build_object('event', topic, 'occurred_at', clock_timestamp()));
    IF current_setting('callbackd.outbox_wake', true) IS DISTINCT FROM 'in_process' THEN
        PERFORM pg_notify('callbackd_outbox', '');
    END IF;
    RETURN NULL;
END
$$;
