-- The claim orders by (priority DESC, due_at, first_joined_at, id). Without id in the
-- index, Postgres read every due request of the top group and sorted them on each claim;
-- with it, the index scan stops at the first claimable row.
DROP INDEX callback_requests_claim_order;
CREATE INDEX callback_requests_claim_order
    ON callback_requests (campaign_id, priority DESC, due_at, first_joined_at, id)
    WHERE status = 'pending';
