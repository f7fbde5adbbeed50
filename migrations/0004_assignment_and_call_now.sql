-- Requests can be assigned to one operator (CRM-task mode, "call now" to a given operator)
-- and asked to be called now (one click from the CRM, the API or the CLI).

ALTER TABLE callback_requests
    ADD COLUMN assigned_operator     text,          -- queue-member interface, e.g. PJSIP/101
    ADD COLUMN call_now_requested_at timestamptz;   -- set by "call now", cleared when claimed

-- "call now" requests are claimed before the campaign's ordinary order; few at a time.
CREATE INDEX callback_requests_call_now
    ON callback_requests (campaign_id, call_now_requested_at, id)
    WHERE status = 'pending' AND call_now_requested_at IS NOT NULL;

-- Unhandled requests per assigned operator (reminder calls in CRM-task mode).
CREATE INDEX callback_requests_assigned_pending
    ON callback_requests (assigned_operator, created_at)
    WHERE status = 'pending' AND assigned_operator IS NOT NULL;

-- A "call now" wakes the dialer too.
DROP TRIGGER callbackd_request_due ON callback_requests;
CREATE TRIGGER callbackd_request_due
    AFTER INSERT OR UPDATE OF status, due_at, call_now_requested_at ON callback_requests
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION callbackd_notify_request_due();
