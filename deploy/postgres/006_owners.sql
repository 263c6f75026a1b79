-- Owners, version 6: each table has one owner (DESIGN.md §2). One schema per owning service
-- and one login role per service, allowed to write its own schema only; a service reads
-- another's data only through the views granted to it.
--
--   schema      written by          tables                                           views (read by)
--   gateway     kalo_gateway        employers, api_keys, receipts, outbox            declarations, employer_periods, employer_dues (gateway)
--   ledger      kalo_ledger         declaration_outcomes, employer_periods,          -
--                                   employer_dues, careers, workers, consumer_offsets
--   assessment  (nobody)            -                                                employers, workers (assessment)
--   control, audit                  (next: the control commission and its audit store)
--
-- Every object here is owned by the role that migrates (the admin): the services hold
-- privileges on objects, never ownership, so none of them can alter, drop or grant. The
-- views run with their owner's rights, so a reader needs no grant on the tables behind
-- them. A later migration that adds a table grants it explicitly (no default privileges:
-- they would also grant the views of a schema).

-- The roles are cluster-wide: every database of the cluster (the test sandboxes too) shares
-- them, and a migration of another database may be creating them at the same moment.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['kalo_gateway', 'kalo_assessment', 'kalo_ledger', 'kalo_liquidation', 'kalo_control']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database
            END;
        ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = r
                      AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls OR NOT rolcanlogin)) THEN
            EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
        END IF;
    END LOOP;
END
$$;

-- Nobody creates objects in `public` but the admin (PostgreSQL 15's default, made explicit).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA gateway;
CREATE SCHEMA ledger;
CREATE SCHEMA assessment;
CREATE SCHEMA control;
CREATE SCHEMA audit;

-- The gateway's registry and outbox; the ledger's projections (indexes and sequences move along).
ALTER TABLE public.employers SET SCHEMA gateway;
ALTER TABLE public.api_keys SET SCHEMA gateway;
ALTER TABLE public.outbox SET SCHEMA gateway;
ALTER TABLE public.employer_periods SET SCHEMA ledger;
ALTER TABLE public.employer_dues SET SCHEMA ledger;
ALTER TABLE public.careers SET SCHEMA ledger;
ALTER TABLE public.workers SET SCHEMA ledger;
ALTER TABLE public.consumer_offsets SET SCHEMA ledger;

-- `declarations` held two owners' columns: the gateway's receipt and the ledger's outcome.
-- The receipt: what the gateway received and answered.
CREATE TABLE gateway.receipts (
    declaration_id   text PRIMARY KEY,
    employer_id      text NOT NULL,
    period           text NOT NULL,
    replaces         text,
    payload_sha256   text NOT NULL,
    idempotency_key  text,
    line_count       int NOT NULL,
    received_at      timestamptz NOT NULL,
    superseded_by    text
);
-- One original per employer and period; corrections go through `replaces`.
CREATE UNIQUE INDEX receipts_one_original ON gateway.receipts (employer_id, period) WHERE replaces IS NULL;
CREATE UNIQUE INDEX receipts_idempotency ON gateway.receipts (employer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX receipts_by_employer ON gateway.receipts (employer_id, period);
CREATE INDEX receipts_by_period ON gateway.receipts (period, received_at);

-- The outcome: the ledger's record of an assessed or rejected declaration. The ledger may
-- see one without a receipt (a rebuild, a message produced around the gateway), so it keeps
-- what it needs of the declaration itself.
CREATE TABLE ledger.declaration_outcomes (
    declaration_id text PRIMARY KEY,
    employer_id    text NOT NULL,
    period         text NOT NULL,
    replaces       text,
    status         text NOT NULL CHECK (status IN ('accepted', 'rejected')),
    line_count     int NOT NULL,
    submitted_at   timestamptz NOT NULL,
    assessed_at    timestamptz NOT NULL,
    ruleset        text,
    totals         jsonb,
    report         json,
    event_id       uuid NOT NULL UNIQUE
);
ALTER TABLE ledger.declaration_outcomes ALTER COLUMN report SET COMPRESSION lz4;
ALTER TABLE ledger.declaration_outcomes ALTER COLUMN totals SET COMPRESSION lz4;
-- The ledger refuses a second original of a month as `declarations` did (same index name).
CREATE UNIQUE INDEX declarations_one_original ON ledger.declaration_outcomes (employer_id, period)
    WHERE replaces IS NULL;

-- The rows move over unchanged: a receipt is a row with a payload hash (the ledger wrote the
-- others, seen only through the topics), an outcome a row with an event.
INSERT INTO gateway.receipts (declaration_id, employer_id, period, replaces, payload_sha256,
                              idempotency_key, line_count, received_at, superseded_by)
SELECT declaration_id, employer_id, period, replaces, payload_sha256,
       idempotency_key, line_count, received_at, superseded_by
FROM public.declarations WHERE payload_sha256 <> '';

INSERT INTO ledger.declaration_outcomes (declaration_id, employer_id, period, replaces, status, line_count,
                                         submitted_at, assessed_at, ruleset, totals, report, event_id)
SELECT declaration_id, employer_id, period, replaces, status, line_count,
       received_at, coalesce(assessed_at, received_at), ruleset, totals, report, event_id
FROM public.declarations WHERE event_id IS NOT NULL AND status IN ('accepted', 'rejected');

DROP FUNCTION public.gateway_submit(text, text, text, text, text, text, int, timestamptz, uuid, text, bytea);
DROP TABLE public.declarations;

-- What the gateway reads of the ledger: each receipt with its outcome (the columns
-- `declarations` had; `received` until the ledger has an outcome), and the accounts. An
-- outcome without a receipt (a message produced around the gateway) stays the ledger's.
CREATE VIEW gateway.declarations AS
SELECT r.declaration_id, r.employer_id, r.period, r.replaces, coalesce(o.status, 'received') AS status,
       r.payload_sha256, r.idempotency_key, r.line_count, r.received_at, o.assessed_at, r.superseded_by,
       o.ruleset, o.totals, o.report, o.event_id
FROM gateway.receipts r LEFT JOIN ledger.declaration_outcomes o ON o.declaration_id = r.declaration_id;

CREATE VIEW gateway.employer_periods AS
SELECT employer_id, period, declaration_id, submitted_at, due_date, months_late, total, surcharge
FROM ledger.employer_periods;

CREATE VIEW gateway.employer_dues AS
SELECT employer_id, period, fund, amount FROM ledger.employer_dues;

-- What the assessment reads: the employer registry and the workers already known.
CREATE VIEW assessment.employers AS
SELECT id, regime, risk_class, filing, active FROM gateway.employers;

CREATE VIEW assessment.workers AS
SELECT worker_id, status FROM ledger.workers;

-- The gateway's receipt in one round trip: every check of a submission, the receipt and its
-- outbox message, in the caller's (implicit) transaction. The checks look at the gateway's
-- receipts; the status returned is the ledger's outcome, or `received`. Outcomes:
--   created               new receipt and outbox row written
--   existing              same Idempotency-Key and body, or identical payload for the month: the old receipt
--   idempotency_conflict  the Idempotency-Key was used with another body (other = that declaration)
--   duplicate_original    the month already has an original (other = it)
--   replaces_not_found    `replaces` names no declaration of this employer
--   replaces_other_period `replaces` is another month's declaration (other = its period)
--   replaces_superseded   `replaces` was already corrected (other = the newer declaration)
CREATE FUNCTION gateway.gateway_submit(
    p_declaration_id text, p_employer_id text, p_period text, p_replaces text, p_sha text,
    p_idempotency_key text, p_line_count int, p_now timestamptz,
    p_event_id uuid, p_topic text, p_value bytea,
    OUT outcome text, OUT r_declaration_id text, OUT r_period text, OUT r_status text,
    OUT r_received_at timestamptz, OUT r_sha text, OUT r_replaces text, OUT other text)
LANGUAGE plpgsql AS $$
DECLARE
    d gateway.receipts%ROWTYPE;
BEGIN
    -- Serialise the submissions of one employer: the checks below see a stable table.
    PERFORM pg_advisory_xact_lock(hashtext('gateway:' || p_employer_id));
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO d FROM gateway.receipts
        WHERE employer_id = p_employer_id AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            outcome := CASE WHEN d.payload_sha256 = p_sha THEN 'existing' ELSE 'idempotency_conflict' END;
            other := d.declaration_id;
            r_declaration_id := d.declaration_id; r_period := d.period;
            r_status := (SELECT v.status FROM gateway.declarations v WHERE v.declaration_id = d.declaration_id);
            r_received_at := d.received_at; r_sha := d.payload_sha256; r_replaces := d.replaces;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO d FROM gateway.receipts
    WHERE employer_id = p_employer_id AND period = p_period AND payload_sha256 = p_sha
    ORDER BY received_at DESC LIMIT 1;
    IF FOUND THEN
        outcome := 'existing';
        r_declaration_id := d.declaration_id; r_period := d.period;
        r_status := (SELECT v.status FROM gateway.declarations v WHERE v.declaration_id = d.declaration_id);
        r_received_at := d.received_at; r_sha := d.payload_sha256; r_replaces := d.replaces;
        RETURN;
    END IF;
    IF p_replaces IS NULL THEN
        SELECT declaration_id INTO other FROM gateway.receipts
        WHERE employer_id = p_employer_id AND period = p_period AND replaces IS NULL;
        IF FOUND THEN
            outcome := 'duplicate_original';
            RETURN;
        END IF;
    ELSE
        SELECT * INTO d FROM gateway.receipts
        WHERE declaration_id = p_replaces AND employer_id = p_employer_id;
        IF NOT FOUND THEN
            outcome := 'replaces_not_found';
            RETURN;
        ELSIF d.period <> p_period THEN
            outcome := 'replaces_other_period';
            other := d.period;
            RETURN;
        ELSIF d.superseded_by IS NOT NULL THEN
            outcome := 'replaces_superseded';
            other := d.superseded_by;
            RETURN;
        END IF;
        UPDATE gateway.receipts SET superseded_by = p_declaration_id WHERE declaration_id = p_replaces;
    END IF;
    INSERT INTO gateway.receipts (declaration_id, employer_id, period, replaces, payload_sha256,
                                  idempotency_key, line_count, received_at)
    VALUES (p_declaration_id, p_employer_id, p_period, p_replaces, p_sha,
            p_idempotency_key, p_line_count, p_now);
    INSERT INTO gateway.outbox (event_id, topic, key, value)
    VALUES (p_event_id, p_topic, convert_to(p_employer_id, 'UTF8'), p_value);
    outcome := 'created';
    r_declaration_id := p_declaration_id; r_period := p_period; r_status := 'received';
    r_received_at := p_now; r_sha := p_sha; r_replaces := p_replaces;
END
$$;

-- Privileges. The services get nothing by default: no function of theirs is PUBLIC's.
REVOKE ALL ON SCHEMA gateway, ledger, assessment, control, audit FROM PUBLIC;
REVOKE ALL ON FUNCTION gateway.gateway_submit(text, text, text, text, text, text, int, timestamptz, uuid, text, bytea)
    FROM PUBLIC;

-- The gateway: writes its registry, receipts and outbox; reads the ledger through its views.
GRANT USAGE ON SCHEMA gateway TO kalo_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway.employers, gateway.api_keys, gateway.receipts, gateway.outbox
    TO kalo_gateway;
GRANT USAGE, SELECT ON SEQUENCE gateway.outbox_seq_seq TO kalo_gateway;
GRANT EXECUTE ON FUNCTION gateway.gateway_submit(text, text, text, text, text, text, int, timestamptz, uuid, text, bytea)
    TO kalo_gateway;
GRANT SELECT ON gateway.declarations, gateway.employer_periods, gateway.employer_dues TO kalo_gateway;

-- The ledger: writes its projections and its consumed offsets; reads nobody's tables.
GRANT USAGE ON SCHEMA ledger TO kalo_ledger;
GRANT SELECT, INSERT, UPDATE, DELETE ON ledger.declaration_outcomes, ledger.employer_periods,
    ledger.employer_dues, ledger.careers, ledger.workers, ledger.consumer_offsets TO kalo_ledger;

-- The assessment: writes nothing in PostgreSQL; reads the registry through its views.
GRANT USAGE ON SCHEMA assessment TO kalo_assessment;
GRANT SELECT ON assessment.employers, assessment.workers TO kalo_assessment;
