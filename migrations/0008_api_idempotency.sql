-- The HTTP API: Idempotency-Key records, so a retried or duplicated "create callback" makes
-- one request and answers with the first result.
--
-- The primary key is the guarantee: concurrent requests with one key all try to insert the
-- key row first, in the same transaction as the request they would create; Postgres lets one
-- win and makes the others wait for its commit, after which they read the stored response.

CREATE TABLE api_idempotency_keys (
    client          text NOT NULL,               -- the API token's name (keys are per client)
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint     text NOT NULL,               -- sha256 of the canonical request payload
    request_id      bigint REFERENCES callback_requests (id),
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key),
    CHECK ((response_status IS NULL) = (response_body IS NULL))
);
CREATE INDEX api_idempotency_keys_age ON api_idempotency_keys (created_at);
