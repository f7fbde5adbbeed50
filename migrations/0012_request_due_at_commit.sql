-- The dialers' wake-up NOTIFY is decided at commit, from the row as it then is.
--
-- The trigger fired as soon as a request became pending. The abandon fast lane (0011)
-- stores a request and claims it in the same transaction, so at commit nothing was due any
-- more: the NOTIFY only woke every dialer (and a listening backend each) to find nothing,
-- and that happened in the very milliseconds the claiming dialer was placing the call.
-- Deferred to commit, the trigger looks at the request again and notifies only when it is
-- still pending. A request that a transaction makes pending and then claims, cancels or
-- closes wakes nobody; every other case notifies exactly as before.

DROP TRIGGER callbackd_request_due ON callback_requests;

CREATE OR REPLACE FUNCTION callbackd_notify_request_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM callback_requests WHERE id = NEW.id AND status = 'pending') THEN
        PERFORM pg_notify('callbackd_request_due', NEW.campaign_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER callbackd_request_due
    AFTER INSERT OR UPDATE OF status, due_at, call_now_requested_at ON callback_requests
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION callbackd_notify_request_due();
