-- The control commission, version 8 (RULES.md §4): every liquidation it received, its
-- flags, the controllers' decisions (four eyes), control sessions with their sealed minutes,
-- the page's sign-ins, and an outbox for kalo.control.decisions and kalo.pensions.approved.
-- Written by the role kalo_control only; the rules of the four eyes are the database's:
--   * one decision per controller and liquidation          UNIQUE (claim_id, controller)
--   * a rejection carries a written reason                 CHECK on decisions
--   * the key that filed the claim decides nothing         trigger decision_allowed
--   * no decision on a liquidation already decided         trigger decision_allowed
--   * a liquidation is approved by its approvals only      trigger decision_applied / liquidation_guard
--   * decisions are never changed nor removed              trigger decision_kept (and no grant)
-- Errors carry the name of the rule broken (constraint name) so the service can answer it.

CREATE SCHEMA IF NOT EXISTS control;

-- The role exists once migration 006 ran; created here too so that this file stands alone.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kalo_control') THEN
        BEGIN
            CREATE ROLE kalo_control LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by the migration of another database
        END;
    END IF;
END
$$;

-- Tracking records of the control's consumer (its own: each schema has one owner).
CREATE TABLE control.consumer_offsets (
    consumer    text NOT NULL,
    topic       text NOT NULL,
    partition   int NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- One row per claim: the liquidation as received, the control's re-computation and flags,
-- and where it stands. `outcome` is the liquidation's own decision (pension, lump_sum,
-- rejected); `status` the control's.
CREATE TABLE control.liquidations (
    claim_id         text PRIMARY KEY,
    worker_id        text NOT NULL,
    regime           text NOT NULL,
    event_id         uuid NOT NULL UNIQUE,
    ruleset          text NOT NULL,
    filed_by         text,  -- the SHA-256 of the API key that filed the claim
    claim            jsonb NOT NULL,
    career           jsonb NOT NULL,
    liquidation      jsonb NOT NULL,
    recomputed       jsonb NOT NULL,
    career_as_of     jsonb,  -- the point the liquidation read the career at, when it says so
    outcome          text NOT NULL CHECK (outcome IN ('pension', 'lump_sum', 'rejected')),
    monthly_pension  bigint NOT NULL DEFAULT 0,
    lump_sum         bigint NOT NULL DEFAULT 0,
    flags            jsonb NOT NULL DEFAULT '[]',
    approvals_needed int NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by       text CHECK (decided_by IN ('auto', 'controllers', 'liquidation')),
    liquidated_at    timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    escalate_at      timestamptz NOT NULL,
    decided_at       timestamptz,
    CONSTRAINT liquidations_four_eyes_when_flagged
        CHECK (approvals_needed = CASE WHEN flags = '[]'::jsonb THEN 1 ELSE 2 END),
    CONSTRAINT liquidations_decided_consistently
        CHECK ((status = 'pending') = (decided_by IS NULL) AND (status = 'pending') = (decided_at IS NULL)),
    CONSTRAINT liquidations_auto_only_unflagged
        CHECK (decided_by IS DISTINCT FROM 'auto' OR (status = 'approved' AND flags = '[]'::jsonb)),
    CONSTRAINT liquidations_rejected_stays_rejected
        CHECK (outcome <> 'rejected' OR status = 'rejected'),
    CONSTRAINT liquidations_by_liquidation_is_rejected
        CHECK (decided_by IS DISTINCT FROM 'liquidation' OR (status = 'rejected' AND outcome = 'rejected'))
);
CREATE INDEX liquidations_pending ON control.liquidations (escalate_at, received_at) WHERE status = 'pending';
CREATE INDEX liquidations_by_status ON control.liquidations (status, received_at);
CREATE INDEX liquidations_approved_by_worker ON control.liquidations (worker_id) WHERE status = 'approved';

-- Control sessions. Closing one freezes its minutes (canonical JSON) and their SHA-256;
-- audit_tree_head is for the audit log's signed tree head (a later issue).
CREATE TABLE control.sessions (
    id               uuid PRIMARY KEY,
    controller       text NOT NULL,
    controller_label text,
    opened_at        timestamptz NOT NULL,
    closed_at        timestamptz,
    minutes          text,
    minutes_sha256   text,
    audit_tree_head  text,
    CONSTRAINT sessions_closed_with_minutes
        CHECK ((closed_at IS NULL) = (minutes IS NULL) AND (minutes IS NULL) = (minutes_sha256 IS NULL))
);
CREATE UNIQUE INDEX sessions_one_open_per_controller ON control.sessions (controller) WHERE closed_at IS NULL;

-- What a controller looked at during a session (the minutes list every one).
CREATE TABLE control.session_reviews (
    session_id  uuid NOT NULL REFERENCES control.sessions (id),
    claim_id    text NOT NULL REFERENCES control.liquidations (claim_id),
    reviewed_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, claim_id)
);

-- The controllers' decisions: append-only.
CREATE TABLE control.decisions (
    id               bigserial PRIMARY KEY,
    claim_id         text NOT NULL REFERENCES control.liquidations (claim_id),
    controller       text NOT NULL,  -- the SHA-256 of the controller's API key
    controller_label text,
    decision         text NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason           text,
    session_id       uuid REFERENCES control.sessions (id),
    decided_at       timestamptz NOT NULL,
    CONSTRAINT decisions_one_per_controller UNIQUE (claim_id, controller),
    CONSTRAINT decisions_reject_has_reason
        CHECK (decision <> 'reject' OR length(trim(coalesce(reason, ''))) > 0)
);
CREATE INDEX decisions_by_session ON control.decisions (session_id) WHERE session_id IS NOT NULL;

CREATE FUNCTION control.decision_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    l control.liquidations%ROWTYPE;
BEGIN
    -- Serialises the decisions on one liquidation: the second of two concurrent approvals
    -- sees the first (and the status it led to).
    SELECT * INTO l FROM control.liquidations WHERE claim_id = NEW.claim_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key refuses it
    END IF;
    IF l.status <> 'pending' THEN
        RAISE EXCEPTION 'liquidation % is already %', l.claim_id, l.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'decisions_liquidation_pending';
    END IF;
    IF l.filed_by IS NOT NULL AND NEW.controller = l.filed_by THEN
        RAISE EXCEPTION 'the key that filed claim % may not decide on it', l.claim_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'decisions_not_the_filer';
    END IF;
    IF NEW.session_id IS NOT NULL AND NOT EXISTS (
        SELECT FROM control.sessions s
        WHERE s.id = NEW.session_id AND s.controller = NEW.controller AND s.closed_at IS NULL
    ) THEN
        RAISE EXCEPTION 'session % is not an open session of this controller', NEW.session_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'decisions_in_own_open_session';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER decision_allowed BEFORE INSERT ON control.decisions
    FOR EACH ROW EXECUTE FUNCTION control.decision_allowed();

-- A rejection decides the liquidation; approvals decide it once there are enough of them.
CREATE FUNCTION control.decision_applied() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    needed int;
BEGIN
    IF NEW.decision = 'reject' THEN
        UPDATE control.liquidations
        SET status = 'rejected', decided_by = 'controllers', decided_at = NEW.decided_at
        WHERE claim_id = NEW.claim_id;
        RETURN NULL;
    END IF;
    SELECT approvals_needed INTO needed FROM control.liquidations WHERE claim_id = NEW.claim_id;
    IF (SELECT count(*) FROM control.decisions WHERE claim_id = NEW.claim_id AND decision = 'approve') >= needed THEN
        UPDATE control.liquidations
        SET status = 'approved', decided_by = 'controllers', decided_at = NEW.decided_at
        WHERE claim_id = NEW.claim_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER decision_applied AFTER INSERT ON control.decisions
    FOR EACH ROW EXECUTE FUNCTION control.decision_applied();

CREATE FUNCTION control.decision_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decisions are never changed nor removed'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'decisions_append_only';
END
$$;

CREATE TRIGGER decision_kept BEFORE UPDATE OR DELETE ON control.decisions
    FOR EACH ROW EXECUTE FUNCTION control.decision_kept();

-- A liquidation is decided once, and by controllers only with their decisions recorded;
-- what it was received with never changes.
CREATE FUNCTION control.liquidation_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    approvals int;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.decided_by = 'controllers' THEN
            RAISE EXCEPTION 'liquidation % arrives undecided by controllers', NEW.claim_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'liquidations_four_eyes';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.claim_id, NEW.worker_id, NEW.event_id, NEW.filed_by, NEW.claim, NEW.career, NEW.liquidation,
        NEW.outcome, NEW.flags, NEW.approvals_needed, NEW.received_at)
       IS DISTINCT FROM
       (OLD.claim_id, OLD.worker_id, OLD.event_id, OLD.filed_by, OLD.claim, OLD.career, OLD.liquidation,
        OLD.outcome, OLD.flags, OLD.approvals_needed, OLD.received_at) THEN
        RAISE EXCEPTION 'liquidation % is kept as received', OLD.claim_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'liquidations_kept_as_received';
    END IF;
    IF OLD.status <> 'pending' AND (NEW.status, NEW.decided_by, NEW.decided_at)
                                   IS DISTINCT FROM (OLD.status, OLD.decided_by, OLD.decided_at) THEN
        RAISE EXCEPTION 'liquidation % is already %', OLD.claim_id, OLD.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'decisions_liquidation_pending';
    END IF;
    IF OLD.status = 'pending' AND NEW.status <> 'pending' THEN
        IF NEW.decided_by IS DISTINCT FROM 'controllers' THEN
            RAISE EXCEPTION 'liquidation % is decided by its controllers now', OLD.claim_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'liquidations_four_eyes';
        END IF;
        SELECT count(*) INTO approvals FROM control.decisions WHERE claim_id = OLD.claim_id AND decision = 'approve';
        IF NEW.status = 'approved' AND approvals < OLD.approvals_needed THEN
            RAISE EXCEPTION 'liquidation % needs % approvals, has %', OLD.claim_id, OLD.approvals_needed, approvals
                USING ERRCODE = 'check_violation', CONSTRAINT = 'liquidations_four_eyes';
        END IF;
        IF NEW.status = 'rejected'
           AND NOT EXISTS (SELECT FROM control.decisions WHERE claim_id = OLD.claim_id AND decision = 'reject') THEN
            RAISE EXCEPTION 'liquidation % has no rejection', OLD.claim_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'liquidations_four_eyes';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER liquidation_guard BEFORE INSERT OR UPDATE ON control.liquidations
    FOR EACH ROW EXECUTE FUNCTION control.liquidation_guard();

-- Closed sessions keep their minutes; only the audit tree head may be added, once.
CREATE FUNCTION control.session_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.closed_at IS NOT NULL AND (
        (NEW.id, NEW.controller, NEW.opened_at, NEW.closed_at, NEW.minutes, NEW.minutes_sha256)
        IS DISTINCT FROM (OLD.id, OLD.controller, OLD.opened_at, OLD.closed_at, OLD.minutes, OLD.minutes_sha256)
        OR (OLD.audit_tree_head IS NOT NULL AND NEW.audit_tree_head IS DISTINCT FROM OLD.audit_tree_head)
    ) THEN
        RAISE EXCEPTION 'session % is closed: its minutes are sealed', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'sessions_sealed';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER session_sealed BEFORE UPDATE ON control.sessions
    FOR EACH ROW EXECUTE FUNCTION control.session_sealed();

-- Signed-in controllers of the page: the cookie holds a random token, the table its hash.
CREATE TABLE control.web_sessions (
    token_hash       text PRIMARY KEY,
    controller       text NOT NULL,
    controller_label text,
    csrf_token       text NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL
);

-- Transactional outbox: each decision's messages, written with it, relayed to Kafka.
CREATE TABLE control.outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          bytea,
    value        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX control_outbox_pending ON control.outbox (seq) WHERE published_at IS NULL;

-- The controllers' API keys, read from the gateway's registry (hashes only). The registry
-- is gateway.api_keys once migration 006 ran, public.api_keys before it.
DO $$
DECLARE
    keys regclass := coalesce(to_regclass('gateway.api_keys'), to_regclass('public.api_keys'));
BEGIN
    EXECUTE format(
        'CREATE VIEW control.controllers AS SELECT key_hash, label, created_at FROM %s WHERE role = %L',
        keys, 'controller');
END
$$;

-- Privileges: kalo_control writes its schema (decisions: insert only) and reads the view.
REVOKE ALL ON SCHEMA control FROM PUBLIC;
GRANT USAGE ON SCHEMA control TO kalo_control;
GRANT SELECT, INSERT, UPDATE, DELETE ON control.consumer_offsets, control.outbox, control.web_sessions
    TO kalo_control;
GRANT SELECT, INSERT, UPDATE ON control.liquidations, control.sessions TO kalo_control;
GRANT SELECT, INSERT ON control.decisions, control.session_reviews TO kalo_control;
GRANT SELECT ON control.controllers TO kalo_control;
GRANT USAGE, SELECT ON SEQUENCE control.decisions_id_seq, control.outbox_seq_seq TO kalo_control;
