-- Pensions, version 7: the gateway's claim receipts and career-import receipts, the ledger's
-- imported careers and its projections of liquidations and decisions, and what the gateway
-- and the liquidation read of them. Owners as in 006:
--
--   schema       written by        tables                                          views (read by)
--   gateway      kalo_gateway      pension_claims, career_import_receipts          pension_claim_states, claim_decisions,
--                                                                                  career_imports_applied (gateway)
--   ledger       kalo_ledger       career_imports, career_import_events,           -
--                                  claim_liquidations, claim_decisions
--   liquidation  (nobody)          -                                               careers, career_imports, ledger_offsets
--                                                                                  (liquidation)
--
-- Careers imported from before Kalo are the ledger's, beside the careers it derives from
-- assessed declarations: the gateway receipts a file and sends its rows through its outbox
-- (kalo.careers.imported), the ledger writes them (and a rebuild replays them).

-- The gateway: a claim as received (the receipt). `filed_by` is the id of the API key that
-- filed it (a prefix of the key's hash, never the key), `filed_by_label` its label.
CREATE TABLE gateway.pension_claims (
    claim_id        text PRIMARY KEY,
    worker_id       text NOT NULL,
    regime          text NOT NULL,
    category        text NOT NULL,
    grade           text,
    birth_date      date NOT NULL,
    effective_date  date NOT NULL,
    replaces        text,
    superseded_by   text,
    payload_sha256  text NOT NULL,
    idempotency_key text,
    filed_by        text NOT NULL,
    filed_by_label  text,
    received_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX pension_claims_idempotency ON gateway.pension_claims (filed_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX pension_claims_by_worker ON gateway.pension_claims (worker_id, received_at);
CREATE INDEX pension_claims_by_time ON gateway.pension_claims (received_at);

-- The gateway: a careers file as received; its rows go out through the outbox, one message
-- per worker on kalo.careers.imported, and the ledger writes them.
CREATE TABLE gateway.career_import_receipts (
    import_id         text PRIMARY KEY,
    payload_sha256    text NOT NULL,
    idempotency_key   text,
    imported_by       text NOT NULL,
    imported_by_label text,
    row_count         int NOT NULL,
    worker_count      int NOT NULL,
    received_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX career_import_receipts_idempotency ON gateway.career_import_receipts (imported_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The ledger: careers from before Kalo, per worker, month and employer (a later import of the
-- same worker, month and employer replaces the row; an identical one changes nothing).
CREATE TABLE ledger.career_imports (
    worker_id   text NOT NULL,
    period      text NOT NULL,
    employer_id text NOT NULL,
    base        bigint NOT NULL CHECK (base >= 0),
    import_id   text NOT NULL,
    imported_at timestamptz NOT NULL,
    PRIMARY KEY (worker_id, period, employer_id)
);
-- The ledger: each import message applied (idempotent by event id), for "applied yet?".
CREATE TABLE ledger.career_import_events (
    event_id   uuid PRIMARY KEY,
    import_id  text NOT NULL,
    worker_id  text NOT NULL,
    entries    int NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX career_import_events_by_import ON ledger.career_import_events (import_id);

-- The ledger: the liquidation of each claim (the first one applied; redeliveries carry the
-- same event id) and every decision about it (control decisions, approvals).
CREATE TABLE ledger.claim_liquidations (
    claim_id        text PRIMARY KEY,
    worker_id       text NOT NULL,
    event_id        uuid NOT NULL UNIQUE,
    liquidated_at   timestamptz NOT NULL,
    ruleset         text NOT NULL,
    regime          text,
    decision        text NOT NULL,
    reason          text,
    monthly_pension bigint NOT NULL DEFAULT 0,
    lump_sum        bigint NOT NULL DEFAULT 0,
    career_months   int NOT NULL,
    liquidation     jsonb NOT NULL,
    claim           jsonb NOT NULL,
    as_of           jsonb
);
CREATE INDEX claim_liquidations_by_worker ON ledger.claim_liquidations (worker_id);

CREATE TABLE ledger.claim_decisions (
    event_id    uuid PRIMARY KEY,
    claim_id    text NOT NULL,
    worker_id   text NOT NULL,
    type        text NOT NULL,  -- control.decided | pension.approved
    decision    text NOT NULL,  -- approved | rejected | pending (control); pension | lump_sum (approved)
    flags       jsonb NOT NULL DEFAULT '[]',
    controllers jsonb NOT NULL DEFAULT '[]',
    reason      text,
    producer    text NOT NULL,
    decided_at  timestamptz NOT NULL
);
CREATE INDEX claim_decisions_by_claim ON ledger.claim_decisions (claim_id, decided_at);

-- A claim's status from what the ledger holds, whatever order the topics were applied in:
-- approved (an approval, or the control's last decision) | rejected (the liquidation's
-- decision, or the control's) | pending_control (the control's last decision is pending) |
-- liquidated | received (nothing yet).
CREATE FUNCTION gateway.claim_status(liquidated boolean, liquidation_decision text, last_control text, approved boolean)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN approved THEN 'approved'
        WHEN liquidation_decision = 'rejected' THEN 'rejected'
        WHEN last_control = 'approved' THEN 'approved'
        WHEN last_control = 'rejected' THEN 'rejected'
        WHEN last_control = 'pending' THEN 'pending_control'
        WHEN liquidated THEN 'liquidated'
        ELSE 'received' END
$$;

-- What the gateway reads: each claim receipt with its status, liquidation and flags; the
-- decisions about a claim; how many workers of an import the ledger has written.
CREATE VIEW gateway.pension_claim_states AS
SELECT c.*, gateway.claim_status(l.claim_id IS NOT NULL, l.decision, d.decision, a.approved) AS status,
       l.liquidation, l.liquidated_at, l.ruleset, l.as_of, coalesce(d.flags, '[]'::jsonb) AS flags
FROM gateway.pension_claims c
LEFT JOIN ledger.claim_liquidations l ON l.claim_id = c.claim_id
LEFT JOIN LATERAL (SELECT x.decision, x.flags FROM ledger.claim_decisions x
                   WHERE x.claim_id = c.claim_id AND x.type = 'control.decided'
                   ORDER BY x.decided_at DESC, x.event_id DESC LIMIT 1) d ON true
LEFT JOIN LATERAL (SELECT true AS approved FROM ledger.claim_decisions x
                   WHERE x.claim_id = c.claim_id AND x.type = 'pension.approved' LIMIT 1) a ON true;

CREATE VIEW gateway.claim_decisions AS
SELECT event_id, claim_id, worker_id, type, decision, flags, controllers, reason, producer, decided_at
FROM ledger.claim_decisions;

CREATE VIEW gateway.career_imports_applied AS
SELECT import_id, count(*) AS workers FROM ledger.career_import_events GROUP BY import_id;

-- The gateway's claim receipt in one round trip (outcomes as gateway_submit's):
--   created              new receipt and outbox row written
--   existing             same Idempotency-Key and body; or the same body for the worker's claim in force
--   idempotency_conflict the Idempotency-Key was used with another body (other = that claim)
--   claim_in_force       the worker has a claim received, liquidated, pending or approved (other = it):
--                        a new claim must revise it (`replaces`)
--   replaces_not_found   `replaces` names no claim of this worker
--   replaces_superseded  `replaces` was already revised (other = the newer claim)
CREATE FUNCTION gateway.gateway_claim(
    p_claim_id text, p_worker_id text, p_regime text, p_category text, p_grade text,
    p_birth_date date, p_effective_date date, p_replaces text, p_sha text, p_idempotency_key text,
    p_filed_by text, p_filed_by_label text, p_now timestamptz, p_event_id uuid, p_topic text, p_value bytea,
    OUT outcome text, OUT r_claim_id text, OUT r_worker_id text, OUT r_status text,
    OUT r_received_at timestamptz, OUT r_sha text, OUT r_replaces text, OUT other text)
LANGUAGE plpgsql AS $$
DECLARE
    c gateway.pension_claims%ROWTYPE;
    found_status text;
BEGIN
    -- Serialise the claims of one worker: the checks below see a stable table.
    PERFORM pg_advisory_xact_lock(hashtext('claim:' || p_worker_id));
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO c FROM gateway.pension_claims
        WHERE filed_by = p_filed_by AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            outcome := CASE WHEN c.payload_sha256 = p_sha THEN 'existing' ELSE 'idempotency_conflict' END;
            other := c.claim_id;
            r_claim_id := c.claim_id; r_worker_id := c.worker_id; r_received_at := c.received_at;
            r_sha := c.payload_sha256; r_replaces := c.replaces;
            r_status := (SELECT s.status FROM gateway.pension_claim_states s WHERE s.claim_id = c.claim_id);
            RETURN;
        END IF;
    END IF;
    IF p_replaces IS NULL THEN
        SELECT s.claim_id, s.status, s.payload_sha256, s.received_at, s.replaces
        INTO other, found_status, r_sha, r_received_at, r_replaces
        FROM gateway.pension_claim_states s
        WHERE s.worker_id = p_worker_id AND s.superseded_by IS NULL AND s.status <> 'rejected'
        ORDER BY s.received_at DESC LIMIT 1;
        IF FOUND THEN
            IF r_sha = p_sha THEN  -- the same body again: its receipt
                outcome := 'existing';
                r_claim_id := other; r_worker_id := p_worker_id; r_status := found_status;
            ELSE
                outcome := 'claim_in_force';
                r_sha := NULL; r_received_at := NULL; r_replaces := NULL;
            END IF;
            RETURN;
        END IF;
    ELSE
        SELECT * INTO c FROM gateway.pension_claims WHERE claim_id = p_replaces AND worker_id = p_worker_id;
        IF NOT FOUND THEN
            outcome := 'replaces_not_found';
            RETURN;
        ELSIF c.superseded_by IS NOT NULL THEN
            outcome := 'replaces_superseded';
            other := c.superseded_by;
            RETURN;
        END IF;
        UPDATE gateway.pension_claims SET superseded_by = p_claim_id WHERE claim_id = p_replaces;
    END IF;
    INSERT INTO gateway.pension_claims (claim_id, worker_id, regime, category, grade, birth_date, effective_date,
                                replaces, payload_sha256, idempotency_key, filed_by, filed_by_label, received_at)
    VALUES (p_claim_id, p_worker_id, p_regime, p_category, p_grade, p_birth_date, p_effective_date,
            p_replaces, p_sha, p_idempotency_key, p_filed_by, p_filed_by_label, p_now);
    INSERT INTO gateway.outbox (event_id, topic, key, value)
    VALUES (p_event_id, p_topic, convert_to(p_worker_id, 'UTF8'), p_value);
    outcome := 'created';
    r_claim_id := p_claim_id; r_worker_id := p_worker_id; r_status := 'received';
    r_received_at := p_now; r_sha := p_sha; r_replaces := p_replaces;
END
$$;

-- The gateway's careers-import receipt and its outbox messages (one per worker) in one round trip:
--   created | existing (same Idempotency-Key and body) | idempotency_conflict (other = that import)
CREATE FUNCTION gateway.gateway_import_careers(
    p_import_id text, p_sha text, p_idempotency_key text, p_imported_by text, p_imported_by_label text,
    p_row_count int, p_now timestamptz, p_topic text, p_event_ids uuid[], p_keys text[], p_values bytea[],
    OUT outcome text, OUT r_import_id text, OUT r_received_at timestamptz, OUT r_row_count int,
    OUT r_worker_count int, OUT r_sha text, OUT other text)
LANGUAGE plpgsql AS $$
DECLARE
    r gateway.career_import_receipts%ROWTYPE;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('careers:' || p_imported_by));
        SELECT * INTO r FROM gateway.career_import_receipts
        WHERE imported_by = p_imported_by AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            outcome := CASE WHEN r.payload_sha256 = p_sha THEN 'existing' ELSE 'idempotency_conflict' END;
            other := r.import_id;
            r_import_id := r.import_id; r_received_at := r.received_at; r_row_count := r.row_count;
            r_worker_count := r.worker_count; r_sha := r.payload_sha256;
            RETURN;
        END IF;
    END IF;
    INSERT INTO gateway.career_import_receipts (import_id, payload_sha256, idempotency_key, imported_by,
                                        imported_by_label, row_count, worker_count, received_at)
    VALUES (p_import_id, p_sha, p_idempotency_key, p_imported_by, p_imported_by_label, p_row_count,
            cardinality(p_keys), p_now);
    INSERT INTO gateway.outbox (event_id, topic, key, value)
    SELECT e, p_topic, convert_to(k, 'UTF8'), v FROM unnest(p_event_ids, p_keys, p_values) AS u(e, k, v);
    outcome := 'created';
    r_import_id := p_import_id; r_received_at := p_now; r_row_count := p_row_count;
    r_worker_count := cardinality(p_keys); r_sha := p_sha;
END
$$;

-- What the liquidation reads: the ledger's career rows (assessed and imported) and the ledger's
-- tracking records, the point those rows reflect.
CREATE SCHEMA liquidation;
CREATE VIEW liquidation.careers AS
SELECT worker_id, period, employer_id, base FROM ledger.careers;
CREATE VIEW liquidation.career_imports AS
SELECT worker_id, period, employer_id, base FROM ledger.career_imports;
CREATE VIEW liquidation.ledger_offsets AS
SELECT topic, partition, next_offset FROM ledger.consumer_offsets WHERE consumer = 'kalo-ledger';

-- Privileges (nothing by default: no function of theirs is PUBLIC's).
REVOKE ALL ON SCHEMA liquidation FROM PUBLIC;
REVOKE ALL ON FUNCTION gateway.claim_status(boolean, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION gateway.gateway_claim(text, text, text, text, text, date, date, text, text, text, text,
    text, timestamptz, uuid, text, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION gateway.gateway_import_careers(text, text, text, text, text, int, timestamptz, text,
    uuid[], text[], bytea[]) FROM PUBLIC;

-- The gateway: writes its claim and import receipts (and their outbox rows); reads the ledger's
-- liquidations, decisions and applied imports through its views.
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.pension_claims, gateway.career_import_receipts TO kalo_gateway;
GRANT EXECUTE ON FUNCTION gateway.claim_status(boolean, text, text, boolean) TO kalo_gateway;
GRANT EXECUTE ON FUNCTION gateway.gateway_claim(text, text, text, text, text, date, date, text, text, text, text,
    text, timestamptz, uuid, text, bytea) TO kalo_gateway;
GRANT EXECUTE ON FUNCTION gateway.gateway_import_careers(text, text, text, text, text, int, timestamptz, text,
    uuid[], text[], bytea[]) TO kalo_gateway;
GRANT SELECT ON gateway.pension_claim_states, gateway.claim_decisions, gateway.career_imports_applied
    TO kalo_gateway;

-- The ledger: writes the imported careers and its projections of liquidations and decisions.
GRANT SELECT, INSERT, UPDATE, DELETE ON ledger.career_imports, ledger.career_import_events,
    ledger.claim_liquidations, ledger.claim_decisions TO kalo_ledger;

-- The liquidation: writes nothing in PostgreSQL; reads the careers and the ledger's offsets.
GRANT USAGE ON SCHEMA liquidation TO kalo_liquidation;
GRANT SELECT ON liquidation.careers, liquidation.career_imports, liquidation.ledger_offsets TO kalo_liquidation;
