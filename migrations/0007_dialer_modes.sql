-- Dialer modes: client-first attempts, caller-pays calls, reminder calls to operators.

-- Which way round an attempt calls: operator first (then the client) or the client first
-- (then the queue or a landing context; no operator leg of ours).
ALTER TABLE attempts
    ADD COLUMN mode text NOT NULL DEFAULT 'operator_first'
        CHECK (mode IN ('operator_first', 'client_first'));

-- Calls to a caller-pays DID (rejected unanswered by the shipped dialplan), keyed as the
-- PBX keys them: the same UserEvent seen twice never makes a second request.
CREATE TABLE caller_pays_calls (
    pbx          text NOT NULL,
    uniqueid     text NOT NULL,
    campaign     text NOT NULL,
    campaign_id  bigint REFERENCES campaigns (id),
    number       text,
    outcome      text NOT NULL,   -- 'stored', 'merged' or the refusal reason
    request_id   bigint REFERENCES callback_requests (id),
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pbx, uniqueid)
);

-- When each operator was last reminded: the row is the per-operator lock that lets only
-- one reminder through per interval, whichever callbackd instance asks.
CREATE TABLE operator_reminders (
    pbx                 text NOT NULL,
    operator_interface  text NOT NULL,
    last_reminded_at    timestamptz NOT NULL,
    last_reminder_id    uuid NOT NULL,
    PRIMARY KEY (pbx, operator_interface)
);

-- Every reminder call placed: its id and our ChannelId, what it said, how it went.
CREATE TABLE reminder_calls (
    id                  uuid PRIMARY KEY,
    channel_id          text NOT NULL UNIQUE,
    pbx                 text NOT NULL,
    operator_interface  text NOT NULL,
    campaign_id         bigint NOT NULL REFERENCES campaigns (id),
    pending_count       integer NOT NULL CHECK (pending_count > 0),
    claimed_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    heard_at            timestamptz,
    ended_at            timestamptz,
    outcome             text CHECK (outcome IN ('answered', 'no_answer', 'busy', 'failed'))
);
CREATE INDEX reminder_calls_by_operator
    ON reminder_calls (pbx, operator_interface, created_at DESC);
