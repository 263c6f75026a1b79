-- Kalo's PostgreSQL schema, version 1. Applied once by `kalo db migrate` (tracked in schema_migrations).

-- Employers and API keys (the gateway's registry). Keys are stored as SHA-256 hashes only.
CREATE TABLE employers (
    id          text PRIMARY KEY,
    name        text,
    regime      text NOT NULL,
    risk_class  int,
    filing      text NOT NULL DEFAULT 'monthly' CHECK (filing IN ('monthly', 'quarterly')),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_hash    text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('employer', 'backoffice', 'controller', 'auditor')),
    employer_id text REFERENCES employers (id),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'employer') = (employer_id IS NOT NULL))
);

-- Declarations as the gateway received them (the receipt) and as the ledger saw them assessed.
CREATE TABLE declarations (
    declaration_id   text PRIMARY KEY,
    employer_id      text NOT NULL,
    period           text NOT NULL,
    replaces         text,
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'accepted', 'rejected')),
    payload_sha256   text NOT NULL,
    idempotency_key  text,
    line_count       int NOT NULL,
    received_at      timestamptz NOT NULL,
    assessed_at      timestamptz,
    superseded_by    text,
    ruleset          text,
    totals           jsonb,
    report           jsonb,
    event_id         uuid UNIQUE
);
-- One original per employer and period; corrections go through `replaces`.
CREATE UNIQUE INDEX declarations_one_original ON declarations (employer_id, period) WHERE replaces IS NULL;
CREATE UNIQUE INDEX declarations_idempotency ON declarations (employer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX declarations_by_employer ON declarations (employer_id, period);

-- Transactional outbox: written with the receipt, relayed to Kafka by the gateway.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          bytea,
    value        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;

-- Tracking records: the next offset of each consumed partition, written in the same
-- transaction as the projection it fed (effectively-once).
CREATE TABLE consumer_offsets (
    consumer    text NOT NULL,
    topic       text NOT NULL,
    partition   int NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- Employer accounts: what is due per period and fund, from the latest accepted declaration.
CREATE TABLE employer_periods (
    employer_id    text NOT NULL,
    period         text NOT NULL,
    declaration_id text NOT NULL,
    submitted_at   timestamptz NOT NULL,
    due_date       date NOT NULL,
    months_late    int NOT NULL,
    total          bigint NOT NULL,
    surcharge      bigint NOT NULL,
    PRIMARY KEY (employer_id, period)
);

CREATE TABLE employer_dues (
    employer_id    text NOT NULL,
    period         text NOT NULL,
    fund           text NOT NULL,
    amount         bigint NOT NULL,
    PRIMARY KEY (employer_id, period, fund)
);

-- Careers: the assessed pension base per worker, month and employer (liquidation's input).
CREATE TABLE careers (
    worker_id      text NOT NULL,
    period         text NOT NULL,
    employer_id    text NOT NULL,
    declaration_id text NOT NULL,
    base           bigint NOT NULL,
    PRIMARY KEY (worker_id, period, employer_id)
);
CREATE INDEX careers_by_employer_period ON careers (employer_id, period);
