-- The one-column CHECKs of the hot tables become domains: the same rules, checked once per
-- value written instead of once per row per statement.
--
-- PostgreSQL keeps a table's CHECK constraints as serialized expression trees and reads
-- them back (stringToNode) for every statement that writes the table, then evaluates every
-- one of them on every row it inserts or updates, whichever columns changed. The status
-- and outcome lists are array constants whose serialized form is long. Counted with
-- callgrind on the abandon's statement (capture_and_claim, tables with 30,000 closed
-- requests), re-reading these CHECKs took 15 % of the server's instructions: 3.74 M per
-- call before this migration, 3.21 M after; the dialer's claim went from 2.20 M to 1.83 M.
-- A domain's constraint is parsed once per session (type cache) and is checked only where
-- a value is coerced to it: the columns an INSERT or UPDATE sets.
--
-- The rules do not change: a number that is not E.164 still cannot be stored, an unknown
-- status or outcome is still refused (check_violation, SQLSTATE 23514). The CHECKs that
-- relate two columns stay table CHECKs. Number columns of the other tables use the same
-- domain, so E.164 is written down once.
--
-- Changing a column's type rewrites the table (ACCESS EXCLUSIVE while it runs). The
-- triggers that name a changed column must be dropped first and are created again as they
-- were. Sessions open across the migration had compiled the PL/pgSQL functions against the
-- old column types and would keep failing ("type of parameter ... does not match that when
-- preparing the plan"); touching each function's catalog row (ALTER FUNCTION ... COST, to
-- its own value) makes every session compile it again on its next call.

CREATE DOMAIN callbackd_e164 AS text
    CHECK (VALUE ~ '^\+[1-9][0-9]{5,14}$');
CREATE DOMAIN callbackd_request_status AS text
    CHECK (VALUE IN ('pending', 'dialing', 'completed', 'failed', 'expired', 'cancelled',
                     'resolved_inbound'));
CREATE DOMAIN callbackd_request_source AS text
    CHECK (VALUE IN ('abandon', 'ivr', 'api', 'caller_pays', 'cli'));
CREATE DOMAIN callbackd_count AS integer
    CHECK (VALUE >= 0);
CREATE DOMAIN callbackd_attempt_state AS text
    CHECK (VALUE IN ('claimed', 'originating', 'operator_ringing', 'operator_answered',
                     'client_ringing', 'bridged', 'finished'));
CREATE DOMAIN callbackd_attempt_outcome AS text
    CHECK (VALUE IN ('completed', 'busy', 'no_answer', 'congestion', 'unavailable',
                     'short_call', 'client_declined', 'operator_no_answer', 'operator_busy',
                     'operator_declined', 'failed', 'unknown'));
CREATE DOMAIN callbackd_attempt_mode AS text
    CHECK (VALUE IN ('operator_first', 'client_first'));
CREATE DOMAIN callbackd_outbox_channel AS text
    CHECK (VALUE IN ('event', 'sms'));

DROP TRIGGER callbackd_request_closed ON callback_requests;
DROP TRIGGER callbackd_request_due ON callback_requests;
DROP TRIGGER callbackd_attempt_finished ON attempts;

ALTER TABLE callback_requests
    DROP CONSTRAINT callback_requests_number_check,
    DROP CONSTRAINT callback_requests_status_check,
    DROP CONSTRAINT callback_requests_source_check,
    DROP CONSTRAINT callback_requests_abandon_count_check,
    DROP CONSTRAINT callback_requests_client_attempts_check,
    DROP CONSTRAINT callback_requests_operator_declines_check,
    ALTER COLUMN number TYPE callbackd_e164,
    ALTER COLUMN status TYPE callbackd_request_status,
    ALTER COLUMN source TYPE callbackd_request_source,
    ALTER COLUMN abandon_count TYPE callbackd_count,
    ALTER COLUMN client_attempts TYPE callbackd_count,
    ALTER COLUMN operator_declines TYPE callbackd_count;

ALTER TABLE attempts
    DROP CONSTRAINT attempts_number_check,
    DROP CONSTRAINT attempts_state_check,
    DROP CONSTRAINT attempts_outcome_check,
    DROP CONSTRAINT attempts_mode_check,
    ALTER COLUMN number TYPE callbackd_e164,
    ALTER COLUMN state TYPE callbackd_attempt_state,
    ALTER COLUMN outcome TYPE callbackd_attempt_outcome,
    ALTER COLUMN mode TYPE callbackd_attempt_mode;

ALTER TABLE outbox
    DROP CONSTRAINT outbox_channel_check,
    ALTER COLUMN channel TYPE callbackd_outbox_channel;

ALTER TABLE customers
    DROP CONSTRAINT customers_number_check,
    ALTER COLUMN number TYPE callbackd_e164;

ALTER TABLE interactions
    DROP CONSTRAINT interactions_number_check,
    ALTER COLUMN number TYPE callbackd_e164;

-- The three triggers as 0009 and 0012 created them.
CREATE TRIGGER callbackd_request_closed
    AFTER UPDATE OF status ON callback_requests
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'failed', 'cancelled', 'resolved_inbound', 'expired'))
    EXECUTE FUNCTION callbackd_request_event();

CREATE TRIGGER callbackd_attempt_finished
    AFTER INSERT OR UPDATE OF state ON attempts
    FOR EACH ROW
    WHEN (NEW.state = 'finished')
    EXECUTE FUNCTION callbackd_attempt_event();

CREATE CONSTRAINT TRIGGER callbackd_request_due
    AFTER INSERT OR UPDATE OF status, due_at, call_now_requested_at ON callback_requests
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION callbackd_notify_request_due();

DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS signature, p.procost
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE l.lanname = 'plpgsql' AND p.pronamespace = current_schema()::regnamespace
    LOOP
        EXECUTE format('ALTER FUNCTION %s COST %s', f.signature, f.procost);
    END LOOP;
END
$$;
