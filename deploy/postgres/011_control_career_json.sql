-- Control, version 11: a liquidation's career snapshot is stored as `json` (its text, as
-- received), not `jsonb`. Nothing queries inside it (the page draws it whole), and parsing a
-- 35-year career into jsonb cost PostgreSQL 0.15 ms per liquidation against 0.02 ms: the
-- largest single cost of the control commission's insert. `json` has no equality operator,
-- so the guard that keeps a liquidation as received compares the career's text. The
-- snapshot (about 10 kB) is compressed with lz4 rather than pglz: 0.04 ms a row, not 0.16.
ALTER TABLE control.liquidations ALTER COLUMN career TYPE json USING career::json;
ALTER TABLE control.liquidations ALTER COLUMN career SET COMPRESSION lz4;

CREATE OR REPLACE FUNCTION control.liquidation_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF (NEW.claim_id, NEW.worker_id, NEW.event_id, NEW.filed_by, NEW.claim, NEW.career::text, NEW.liquidation,
        NEW.outcome, NEW.flags, NEW.approvals_needed, NEW.received_at)
       IS DISTINCT FROM
       (OLD.claim_id, OLD.worker_id, OLD.event_id, OLD.filed_by, OLD.claim, OLD.career::text, OLD.liquidation,
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
