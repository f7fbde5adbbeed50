-- The claim skips a request for an operator who declined (or missed) it in the last ten
-- minutes. Without an index that check read every attempt ever made on every claim: 18 ms
-- per claim with 100,000 attempts of history. This partial index holds only operator
-- refusals, by operator and time, so the check reads the few recent ones of that operator.
CREATE INDEX attempts_recent_operator_refusals
    ON attempts (operator_interface, ended_at)
    WHERE outcome IN ('operator_declined', 'operator_no_answer', 'operator_busy');
