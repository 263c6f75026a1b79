-- The control commission, version 10: escalations are decisions too (issue 13), recorded once.
--   * control.escalations: each liquidation escalated (pending past its escalate_at), once,
--     written with its audit event in one transaction; append-only like the decisions.
--   * control.liquidations.career_sources: where the months of the career snapshot come from
--     (runs of months: first, last, assessed | imported | both), as the liquidation says;
--     NULL for the liquidations made before it said so.

CREATE TABLE control.escalations (
    claim_id     text PRIMARY KEY REFERENCES control.liquidations (claim_id),
    escalated_at timestamptz NOT NULL
);

CREATE TRIGGER escalation_kept BEFORE UPDATE OR DELETE ON control.escalations
    FOR EACH ROW EXECUTE FUNCTION control.decision_kept();

ALTER TABLE control.liquidations ADD COLUMN career_sources jsonb;

GRANT SELECT, INSERT ON control.escalations TO kalo_control;

-- Kept as received, like the rest of the liquidation (control.liquidation_guard).
CREATE FUNCTION control.career_sources_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.career_sources IS DISTINCT FROM OLD.career_sources THEN
        RAISE EXCEPTION 'liquidation % is kept as received', OLD.claim_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'liquidations_kept_as_received';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER career_sources_kept BEFORE UPDATE ON control.liquidations
    FOR EACH ROW EXECUTE FUNCTION control.career_sources_kept();
