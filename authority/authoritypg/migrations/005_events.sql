-- The SET outbox: how each Service takes events, and the signed SETs
-- waiting for it. Rows are written in the transaction of the mission
-- change that caused them; replicas claim push rows by subject (the oldest
-- row of a subject, none of it leased), so one SET per subject is in flight.
CREATE TABLE IF NOT EXISTS agentpass_authority_event_receivers (
    service         text PRIMARY KEY,
    delivery_method text NOT NULL,
    receiver        text NOT NULL DEFAULT '',
    events_accepted text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS agentpass_authority_events (
    seq         bigserial PRIMARY KEY,
    jti         text NOT NULL UNIQUE,
    service     text NOT NULL,
    subject     text NOT NULL,
    push        boolean NOT NULL,
    receiver    text NOT NULL DEFAULT '',
    terminal    boolean NOT NULL,
    keep        boolean NOT NULL,
    set_jwt     text NOT NULL,
    created_at  timestamptz NOT NULL,
    next_at     timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    owner       text NOT NULL DEFAULT '',
    lease_until timestamptz
);

CREATE INDEX IF NOT EXISTS agentpass_authority_events_subject ON agentpass_authority_events (subject, seq);
CREATE INDEX IF NOT EXISTS agentpass_authority_events_service ON agentpass_authority_events (service, seq);
