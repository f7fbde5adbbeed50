-- Customer categories mean something: per-category rules from the configuration.
--
-- customers.category was a label only. The configuration's [categories.<name>] tables now
-- give a category a priority, skip_queue and a sticky-operator ring time
-- (callbackd/settings.py, CategoryRule). The daemon mirrors them into customer_categories
-- when it starts (callbackd/services/categories.py), as it does campaigns, so that the
-- statements that make a request and the caller lookup read them where they read the
-- customer:
--   * callbackd_customer_priority(number) is the priority a number's requests get on top
--     of their campaign's: the customer's own when it is not 0, else their category's,
--     else 0. Capture (callbackd_capture_abandon, below, 0016's but for that expression),
--     the IVR, caller pays and the API use it.
--   * The caller lookup (callbackd/db/queries/agi.sql, caller_facts) joins the category.
-- A customer's own non-default value wins over the category's (priority not 0, skip_queue
-- true); a NULL column of a category is a key the configuration left unset.

CREATE TABLE customer_categories (
    name                 text PRIMARY KEY,
    priority             integer,
    skip_queue           boolean,
    sticky_ring_seconds  integer,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- PL/pgSQL: its plan is cached for the session (capture runs it on every abandon).
CREATE FUNCTION callbackd_customer_priority(p_number text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found_priority integer;
BEGIN
    SELECT COALESCE(NULLIF(cu.priority, 0), k.priority, 0) INTO found_priority
    FROM customers cu
    LEFT JOIN customer_categories k ON k.name = cu.category
    WHERE cu.number = p_number;
    RETURN COALESCE(found_priority, 0);
END
$$;

-- 0016's capture; the request's priority comes from callbackd_customer_priority.
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
        p_priority + callbackd_customer_priority(p_number),
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
