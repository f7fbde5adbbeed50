-- The dialer: instances with heartbeats, attempt bookkeeping, and a wake-up NOTIFY.

-- Every running callbackd registers here and beats; attempts claimed by an instance whose
-- heartbeat stopped are adopted (and reconciled with Asterisk) by a live one.
CREATE TABLE instances (
    name          text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE attempts
    ADD COLUMN campaign_id bigint REFERENCES campaigns (id),
    ADD COLUMN stage text;   -- the last stage the shipped dialplan reported

CREATE INDEX attempts_in_flight_by_instance ON attempts (claimed_by) WHERE state <> 'finished';
CREATE INDEX attempts_by_number_and_time ON attempts (number, created_at);

-- The client reached an operator by calling in while a callback for them was in flight:
-- when that attempt ends, the request is closed instead of being retried.
ALTER TABLE callback_requests ADD COLUMN resolved_inbound_at timestamptz;

-- LISTEN/NOTIFY only wakes the dialer early; its polling is the guarantee.
CREATE FUNCTION callbackd_notify_request_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('callbackd_request_due', NEW.campaign_id::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER callbackd_request_due
    AFTER INSERT OR UPDATE OF status, due_at ON callback_requests
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION callbackd_notify_request_due();
