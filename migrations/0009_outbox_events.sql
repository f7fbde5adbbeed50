-- The outbox becomes an event log with per-target deliveries (webhooks and SMS).
--
-- Why triggers: every state change of a request (made by capture, the dialer, the HTTP API,
-- the CLI or an admin's psql) must announce itself in the SAME transaction as the change,
-- and none of those writers should have to remember to. AFTER ROW triggers on
-- callback_requests and attempts write the event row inside the writer's transaction: if the
-- change commits, so does its event; if it is rolled back, no event exists.
--
-- Events (outbox.channel = 'event'):
--   callback.created            a request row was inserted (a merge into an open request is
--                               not a new request and announces nothing)
--   callback.completed / failed / cancelled / resolved_inbound / expired
--                               the request's status changed to that value
--   callback.attempted          an attempt reached state 'finished' (once per attempt)
-- event_id is chosen once, when the row is written, and is what receivers dedupe by.
--
-- Delivery is decided by the configuration, not here: the worker fans each new event out
-- (fanned_out_at) into one outbox_deliveries row per matching webhook endpoint and, when a
-- campaign's SMS policy says so, an SMS row (channel 'sms') with its own delivery row. Every
-- delivery row carries its retry state (available_at, tries, last_error) and ends either
-- delivered or given up; a delivered row is never sent again.

ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
DROP INDEX outbox_undelivered;
ALTER TABLE outbox
    DROP COLUMN available_at,
    DROP COLUMN tries,
    DROP COLUMN last_error,
    DROP COLUMN delivered_at,
    DROP COLUMN given_up_at,
    ADD COLUMN event_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    ADD COLUMN campaign_id bigint REFERENCES campaigns (id),
    ADD COLUMN number text,
    ADD COLUMN quiet_until timestamptz,
    ADD COLUMN fanned_out_at timestamptz,
    ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('event', 'sms')),
    -- an SMS names its number and the end of the window in which no other SMS goes to it
    ADD CONSTRAINT outbox_sms_shape CHECK (
        channel <> 'sms' OR (number IS NOT NULL AND quiet_until IS NOT NULL
                             AND quiet_until > created_at));

CREATE INDEX outbox_not_fanned_out ON outbox (id) WHERE fanned_out_at IS NULL;
CREATE INDEX outbox_by_request ON outbox (request_id, id);

-- "Once per number per window", enforced by the database: the quiet periods
-- [created_at, quiet_until) of two SMS to the same number never overlap, whichever instance
-- or transaction writes them. btree_gist is a trusted extension (a database owner may
-- create it).
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE outbox ADD CONSTRAINT outbox_sms_once_per_window
    EXCLUDE USING gist (number WITH =, tstzrange(created_at, quiet_until) WITH &&)
    WHERE (channel = 'sms');

-- One row per (message, target): a webhook endpoint's name, or 'sms'.
CREATE TABLE outbox_deliveries (
    outbox_id     bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    target        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    tries         integer NOT NULL DEFAULT 0 CHECK (tries >= 0),
    last_error    text,
    last_status   integer,
    delivered_at  timestamptz,
    given_up_at   timestamptz,
    PRIMARY KEY (outbox_id, target),
    CHECK (delivered_at IS NULL OR given_up_at IS NULL)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (available_at, outbox_id)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;

-- The event payload of a request: what a CRM needs without a second lookup. PL/pgSQL, not
-- SQL: its plans are cached for the session (a non-inlined SQL function is planned anew on
-- every call, which tripled the cost of a bulk insert).
CREATE FUNCTION callbackd_request_event_payload(r callback_requests) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    campaign_name text;
BEGIN
    SELECT c.name INTO campaign_name FROM campaigns c WHERE c.id = r.campaign_id;
    RETURN jsonb_build_object(
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

CREATE FUNCTION callbackd_request_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
    PERFORM pg_notify('callbackd_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER callbackd_request_created
    AFTER INSERT ON callback_requests
    FOR EACH ROW EXECUTE FUNCTION callbackd_request_event();

CREATE TRIGGER callbackd_request_closed
    AFTER UPDATE OF status ON callback_requests
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'failed', 'cancelled', 'resolved_inbound', 'expired'))
    EXECUTE FUNCTION callbackd_request_event();

CREATE FUNCTION callbackd_attempt_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r callback_requests;
BEGIN
    SELECT * INTO r FROM callback_requests WHERE id = NEW.request_id;
    INSERT INTO outbox (channel, topic, dedupe_key, request_id, campaign_id, payload)
    VALUES ('event', 'callback.attempted', 'callback.attempted:' || NEW.id::text, NEW.request_id,
            r.campaign_id,
            callbackd_request_event_payload(r) || jsonb_build_object(
                'event', 'callback.attempted',
                'occurred_at', clock_timestamp(),
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

CREATE TRIGGER callbackd_attempt_finished
    AFTER INSERT OR UPDATE OF state ON attempts
    FOR EACH ROW
    WHEN (NEW.state = 'finished')
    EXECUTE FUNCTION callbackd_attempt_event();
