-- Less work for every attempt written and every event announced.
--
-- An instruction count of one call's rows (PostgreSQL under callgrind: the dialer's claim,
-- then the attempt finished and the request completed) found a third of the work in the
-- two outbox events the finish writes, and much of the rest in checks that prove nothing
-- the schema does not already guarantee:
--   * attempts.operator_channel_id and client_channel_id were UNIQUE. Both are made from
--     the attempt's id (callbackd-<uuid>, callbackd-<uuid>-client), which is the primary
--     key; nothing looks an attempt up by them; and Asterisk itself refuses an Originate
--     whose ChannelId is in use. Two unique indexes, each written and checked twice per
--     attempt (insert, then the finish, which changes indexed columns), guarded nothing.
--   * attempts.campaign_id referenced campaigns: an attempt's campaign is copied from its
--     request, which references both (attempts.request_id stays a foreign key).
--   * outbox.request_id and campaign_id referenced their rows: events are written by the
--     triggers of those very rows, and requests and campaigns are never deleted, so the
--     checks (one lookup with a share lock each, per event) found them every time.
--   * outbox.event_id was UNIQUE: a random uuid (122 random bits) made once per row, never
--     looked up by; receivers dedupe by it.
--   * outbox_by_request served no statement (callbackd/db/queries/outbox.sql): only the
--     foreign key above, when a request would be deleted.
--   * The request_closed trigger's WHEN listed the closed statuses: PostgreSQL reads a WHEN
--     back from its stored form for every statement that may fire it (2,000 characters
--     here). The table's CHECK already ties them to closed_at, so "closed_at IS NOT NULL"
--     says the same.
--   * An event's payload was built as jsonb and merged with its "event" and "occurred_at"
--     (a jsonb merge rebuilds the whole value and sorts its keys again). They are now
--     built in one go; the attempted event adds its "attempt" with one merge. The
--     payloads are unchanged.

ALTER TABLE attempts
    DROP CONSTRAINT attempts_operator_channel_id_key,
    DROP CONSTRAINT attempts_client_channel_id_key,
    DROP CONSTRAINT attempts_campaign_id_fkey;

ALTER TABLE outbox
    DROP CONSTRAINT outbox_request_id_fkey,
    DROP CONSTRAINT outbox_campaign_id_fkey,
    DROP CONSTRAINT outbox_event_id_key;
DROP INDEX outbox_by_request;

DROP TRIGGER callbackd_request_closed ON callback_requests;
CREATE TRIGGER callbackd_request_closed
    AFTER UPDATE OF status ON callback_requests
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.closed_at IS NOT NULL)
    EXECUTE FUNCTION callbackd_request_event();

-- 0009's payload, with the event's name and time in the same object.
CREATE FUNCTION callbackd_request_event_payload(r callback_requests, topic text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    campaign_name text;
BEGIN
    SELECT c.name INTO campaign_name FROM campaigns c WHERE c.id = r.campaign_id;
    RETURN jsonb_build_object(
        'event', topic,
        'occurred_at', clock_timestamp(),
        'request_id', r.id,
        'external_id', r.external_id,
        'campaign', campaign_name,
        'queue', r.queue,
        'pbx', r.pbx,
        'number', r.number,
        'status', r.status,
        'reason', r.status_reason,
        'source', r.source,
        'priority', r.priority,
        'abandon_count', r.abandon_count,
        'client_attempts', r.client_attempts,
        'assigned_operator', r.assigned_operator,
        'due_at', r.due_at,
        'created_at', r.created_at,
        'updated_at', r.updated_at,
        'closed_at', r.closed_at
    );
END
$$;

-- 0014's trigger function; only the payload's construction changed.
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
    VALUES ('event', topic, NEW.id, NEW.campaign_id, callbackd_request_event_payload(NEW, topic));
    IF current_setting('callbackd.outbox_wake', true) IS DISTINCT FROM 'in_process' THEN
        PERFORM pg_notify('callbackd_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

-- 0009's trigger function; only the payload's construction changed.
CREATE OR REPLACE FUNCTION callbackd_attempt_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r callback_requests;
BEGIN
    SELECT * INTO r FROM callback_requests WHERE id = NEW.request_id;
    INSERT INTO outbox (channel, topic, dedupe_key, request_id, campaign_id, payload)
    VALUES ('event', 'callback.attempted', 'callback.attempted:' || NEW.id::text, NEW.request_id,
            r.campaign_id,
            callbackd_request_event_payload(r, 'callback.attempted') || jsonb_build_object(
                'attempt', jsonb_build_object(
                    'id', NEW.id,
                    'outcome', NEW.outcome,
                    'dial_status', NEW.dial_status,
                    'hangup_by', NEW.hangup_by,
                    'talk_seconds', NEW.talk_seconds,
                    'operator', NEW.operator_interface,
                    'started_at', NEW.created_at,
                    'operator_answered_at', NEW.operator_answered_at,
                    'client_answered_at', NEW.client_answered_at,
                    'ended_at', NEW.ended_at)))
    ON CONFLICT (dedupe_key) DO NOTHING;
    PERFORM pg_notify('callbackd_outbox', '');
    RETURN NULL;
END
$$;

DROP FUNCTION callbackd_request_event_payload(callback_requests);
