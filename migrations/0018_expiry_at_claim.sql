-- Expiry is enforced when a request is claimed, not only after an attempt.
--
-- A campaign's retry.expiry_seconds (the configuration) was read only by the retry decision
-- after an attempt: a request past its expiry was still claimed and dialled once, and none
-- was ever closed as 'expired'. The claim runs in the database, so the database now knows
-- the expiry:
--   * campaigns.expiry_seconds mirrors the campaign's retry.expiry_seconds; the daemon writes
--     it with the rest of the campaign row when it starts (callbackd/services/campaigns.py).
--     numeric: the setting has no upper bound. NULL (a row no daemon has synced since this
--     migration) means nothing expires yet.
--   * The operator-first claim (callbackd_claim_for_operator, below) and the client-first
--     claim (callbackd/db/queries/modes.sql) skip a request once
--     now() - created_at > expiry_seconds: the same instant at which the retry decision
--     (callbackd/domain/retry.py) calls a request expired.
--   * The dialer closes such requests with status 'expired' in one statement per pass
--     (callbackd/db/queries/dialer.sql, expire_requests), whatever the operators are doing;
--     the request_closed trigger writes callback.expired.
-- The claim's signature and result do not change, so capture_and_claim, which calls it, is
-- untouched; a session open across this migration compiles the new body on its next call.

ALTER TABLE campaigns ADD COLUMN expiry_seconds numeric;

-- 0016's claim; the two picks leave out expired requests.
CREATE OR REPLACE FUNCTION callbackd_claim_for_operator(
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
    expiry numeric;
    claimed callback_requests;
    started attempts;
BEGIN
    SELECT c.expiry_seconds INTO expiry FROM campaigns c WHERE c.id = p_campaign_id;
    SELECT r.id INTO picked
    FROM callback_requests r
    WHERE r.campaign_id = p_campaign_id
      AND r.status = 'pending'
      AND r.call_now_requested_at IS NOT NULL
      AND (expiry IS NULL OR extract(epoch FROM now() - r.created_at) <= expiry)
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
          AND (expiry IS NULL OR extract(epoch FROM now() - r.created_at) <= expiry)
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
