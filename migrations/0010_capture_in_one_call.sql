-- Capture of an abandon in one round trip (callbackd/services/capture.py).
--
-- Storing an abandoned caller was BEGIN, claim the (pbx, uniqueid), upsert the request, link
-- the abandon to it, COMMIT: five round trips between the abandon and the moment the dialer
-- can see the request. This function does the same three steps, in the same order and with
-- the same locks, inside the caller's statement: the first sighting of (pbx, uniqueid) wins,
-- a second sighting (live event and queue_log replay, in any order or at once) returns NULL
-- and changes nothing.
--
-- It returns the request as jsonb plus "created" (false: merged into an open request of the
-- number in the campaign), or NULL for a duplicate. PL/pgSQL: its plans are cached for the
-- session.

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
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    request jsonb;
    created boolean;
BEGIN
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
