-- callbackd schema, first version.
--
-- Conventions: status-like columns are text with CHECK constraints (easier to extend in a
-- later migration than enum types); every phone number is E.164 and checked here too, so a
-- number that did not come through callbackd's own normaliser cannot be stored at all.

-- A campaign is the per-queue callback policy named in the configuration. Policy values
-- (retries, calling window) live in the configuration; the row gives requests a stable id.
CREATE TABLE campaigns (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    pbx         text NOT NULL,
    queue       text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('operator_first', 'client_first', 'crm_task')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pbx, queue)
);

-- One person to call back, in one campaign.
CREATE TABLE callback_requests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id         bigint NOT NULL REFERENCES campaigns (id),
    number              text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{5,14}$'),
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN (
                            'pending',           -- waiting for its due time and a free operator
                            'dialing',           -- an attempt is in flight
                            'completed',         -- operator and client talked
                            'failed',            -- retries exhausted
                            'expired',           -- too old to call
                            'cancelled',         -- by the CRM, the CLI or an operator
                            'resolved_inbound'   -- the client got through by calling again
                        )),
    source              text NOT NULL CHECK (source IN ('abandon', 'ivr', 'api', 'caller_pays', 'cli')),
    priority            integer NOT NULL DEFAULT 0,
    due_at              timestamptz NOT NULL DEFAULT now(),
    preferred_at        timestamptz,
    first_joined_at     timestamptz,             -- earliest queue join: the caller keeps their place
    abandon_count       integer NOT NULL DEFAULT 0 CHECK (abandon_count >= 0),
    last_abandon_at     timestamptz,
    client_attempts     integer NOT NULL DEFAULT 0 CHECK (client_attempts >= 0),
    operator_declines   integer NOT NULL DEFAULT 0 CHECK (operator_declines >= 0),
    -- what the PBX told us about the (last) abandoned call
    pbx                 text,
    queue               text,
    caller_name         text,
    position            integer,
    original_position   integer,
    hold_seconds        integer,
    uniqueid            text,
    linkedid            text,
    -- CRM side
    external_id         text,
    note                text,
    status_reason       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    closed_at           timestamptz,
    CHECK ((status IN ('pending', 'dialing')) = (closed_at IS NULL))
);

-- At most one open request per number and campaign: a second abandon merges into it.
CREATE UNIQUE INDEX callback_requests_one_open_per_number
    ON callback_requests (campaign_id, number)
    WHERE status IN ('pending', 'dialing');

-- The dialer's claim order within a campaign.
CREATE INDEX callback_requests_claim_order
    ON callback_requests (campaign_id, priority DESC, due_at, first_joined_at)
    WHERE status = 'pending';

CREATE INDEX callback_requests_number ON callback_requests (number);
CREATE INDEX callback_requests_external_id ON callback_requests (external_id)
    WHERE external_id IS NOT NULL;

-- Every QueueCallerAbandon seen (live or replayed from queue_log), keyed as the PBX keys it:
-- the same event seen twice never creates a second request.
CREATE TABLE queue_abandons (
    pbx          text NOT NULL,
    uniqueid     text NOT NULL,
    request_id   bigint REFERENCES callback_requests (id),
    queue        text NOT NULL,
    number       text,
    outcome      text NOT NULL,   -- 'stored', 'merged' or the refusal reason
    abandoned_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pbx, uniqueid)
);
CREATE INDEX queue_abandons_latest ON queue_abandons (pbx, abandoned_at DESC);

-- One try at connecting an operator and a client. The id is chosen before the Originate is
-- sent and the channel ids derive from it, so a call can be found again after a crash.
CREATE TABLE attempts (
    id                    uuid PRIMARY KEY,
    request_id            bigint NOT NULL REFERENCES callback_requests (id),
    number                text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{5,14}$'),
    pbx                   text NOT NULL,
    operator_interface    text,
    operator_channel_id   text NOT NULL UNIQUE,
    client_channel_id     text NOT NULL UNIQUE,
    state                 text NOT NULL DEFAULT 'claimed' CHECK (state IN (
                              'claimed', 'originating', 'operator_ringing', 'operator_answered',
                              'client_ringing', 'bridged', 'finished')),
    outcome               text CHECK (outcome IN (
                              'completed', 'busy', 'no_answer', 'congestion', 'unavailable',
                              'short_call', 'client_declined', 'operator_no_answer',
                              'operator_busy', 'operator_declined', 'failed', 'unknown')),
    dial_status           text,
    hangup_by             text,
    talk_seconds          integer,
    claimed_by            text NOT NULL,
    heartbeat_at          timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    operator_answered_at  timestamptz,
    client_answered_at    timestamptz,
    ended_at              timestamptz,
    detail                jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK ((state = 'finished') = (outcome IS NOT NULL AND ended_at IS NOT NULL))
);

-- Never two calls at once to one client, one operator, or for one request: the database
-- says no even to a second callbackd instance.
CREATE UNIQUE INDEX attempts_one_in_flight_per_number
    ON attempts (number) WHERE state <> 'finished';
CREATE UNIQUE INDEX attempts_one_in_flight_per_operator
    ON attempts (pbx, operator_interface)
    WHERE state <> 'finished' AND operator_interface IS NOT NULL;
CREATE UNIQUE INDEX attempts_one_in_flight_per_request
    ON attempts (request_id) WHERE state <> 'finished';
CREATE INDEX attempts_by_request ON attempts (request_id, created_at);

-- Who talked with whom: the returning-caller ("sticky operator") feature reads this.
CREATE TABLE interactions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number              text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{5,14}$'),
    pbx                 text NOT NULL,
    queue               text,
    operator_interface  text NOT NULL,
    source              text NOT NULL CHECK (source IN ('inbound', 'callback')),
    uniqueid            text,
    occurred_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX interactions_latest_by_number ON interactions (number, occurred_at DESC);
CREATE UNIQUE INDEX interactions_once_per_call
    ON interactions (pbx, uniqueid, operator_interface) WHERE uniqueid IS NOT NULL;

-- Customer categories set by the CRM or the CLI: priority and queue bypass.
CREATE TABLE customers (
    number      text PRIMARY KEY CHECK (number ~ '^\+[1-9][0-9]{5,14}$'),
    category    text NOT NULL DEFAULT 'regular',
    priority    integer NOT NULL DEFAULT 0,
    skip_queue  boolean NOT NULL DEFAULT false,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Notifications to send (webhooks, SMS), written in the same transaction as the state change
-- they announce, delivered by a worker with retries.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel       text NOT NULL CHECK (channel IN ('webhook', 'sms')),
    topic         text NOT NULL,
    dedupe_key    text UNIQUE,
    request_id    bigint REFERENCES callback_requests (id),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    tries         integer NOT NULL DEFAULT 0,
    last_error    text,
    delivered_at  timestamptz,
    given_up_at   timestamptz
);
CREATE INDEX outbox_undelivered ON outbox (available_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
