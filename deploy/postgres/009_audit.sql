-- The audit store, version 9: the control commission's tamper-evident log of `kalo.audit`
-- (services/control/audit). An append-only Merkle log in RFC 9162 form: record k (k = 0…n−1)
-- is the RFC 8785 canonical JSON of one audit event, its leaf hash SHA-256(0x00 ‖ record);
-- signed tree heads (Ed25519) are published outside the database (the topic kalo.audit.heads
-- and a heads file), so an altered, removed, inserted or truncated record is detected by
-- `kalo audit verify`, even when a superuser made the change.
--
-- The writer, role kalo_audit, may only INSERT and SELECT here: its grants say so, and
-- triggers refuse UPDATE, DELETE and TRUNCATE to everyone (a superuser can drop a trigger:
-- that is what the signed heads are for). The control commission (kalo_control) reads the
-- heads, to seal its session minutes with the latest one.

CREATE SCHEMA IF NOT EXISTS audit;

-- Roles are cluster-wide: the migration of another database may be creating it meanwhile.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kalo_audit') THEN
        BEGIN
            CREATE ROLE kalo_audit LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = 'kalo_audit'
                  AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls OR NOT rolcanlogin)) THEN
        ALTER ROLE kalo_audit LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
END
$$;

-- The log. `seq` is the leaf index; `record` the exact bytes hashed. The other columns are
-- for finding records (by subject, by action) and are not trusted: `kalo audit export`
-- and `verify` read the record itself.
CREATE TABLE audit.records (
    seq          bigint PRIMARY KEY CHECK (seq >= 0),
    event_id     uuid NOT NULL UNIQUE,
    record       bytea NOT NULL,
    leaf_hash    bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    action       text NOT NULL,
    subject      text NOT NULL,
    actor        text,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX records_by_subject ON audit.records (subject, seq);

-- Signed tree heads, in signing order. `leaves_from`: the first leaf this head adds.
CREATE TABLE audit.heads (
    tree_size    bigint NOT NULL CHECK (tree_size >= 0),
    timestamp_ms bigint NOT NULL,
    root_hash    bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    key_id       text NOT NULL,
    signature    bytea NOT NULL,
    leaves_from  bigint NOT NULL,
    PRIMARY KEY (tree_size, timestamp_ms)
);

-- What the writer consumed: one row per partition and batch (never updated), written in
-- the batch's transaction; its position is the greatest.
CREATE TABLE audit.positions (
    topic        text NOT NULL,
    partition    int NOT NULL,
    next_offset  bigint NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX positions_latest ON audit.positions (topic, partition, next_offset DESC);

CREATE FUNCTION audit.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.%: % refused, the audit log is append-only', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON audit.records
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON audit.records
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER heads_append_only BEFORE UPDATE OR DELETE ON audit.heads
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER heads_no_truncate BEFORE TRUNCATE ON audit.heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER positions_append_only BEFORE UPDATE OR DELETE ON audit.positions
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER positions_no_truncate BEFORE TRUNCATE ON audit.positions
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();

-- Privileges: the writer inserts and reads; nobody else gets anything by default.
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
REVOKE ALL ON audit.records, audit.heads, audit.positions FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.append_only() FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO kalo_audit;
GRANT SELECT, INSERT ON audit.records, audit.heads, audit.positions TO kalo_audit;

-- The control commission reads the heads (its minutes are sealed with the latest).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'kalo_control') THEN
        GRANT USAGE ON SCHEMA audit TO kalo_control;
        GRANT SELECT ON audit.heads TO kalo_control;
    END IF;
END
$$;
