-- The gateway's receipt in one round trip: every check of a submission, the receipt and its
-- outbox message, in the caller's (implicit) transaction. Outcomes:
--   created               new receipt and outbox row written
--   existing              same Idempotency-Key and body, or identical payload for the month: the old receipt
--   idempotency_conflict  the Idempotency-Key was used with another body (other = that declaration)
--   duplicate_original    the month already has an original (other = it)
--   replaces_not_found    `replaces` names no declaration of this employer
--   replaces_other_period `replaces` is another month's declaration (other = its period)
--   replaces_superseded   `replaces` was already corrected (other = the newer declaration)
CREATE FUNCTION gateway_submit(
    p_declaration_id text, p_employer_id text, p_period text, p_replaces text, p_sha text,
    p_idempotency_key text, p_line_count int, p_now timestamptz,
    p_event_id uuid, p_topic text, p_value bytea,
    OUT outcome text, OUT r_declaration_id text, OUT r_period text, OUT r_status text,
    OUT r_received_at timestamptz, OUT r_sha text, OUT r_replaces text, OUT other text)
LANGUAGE plpgsql AS $$
DECLARE
    d declarations%ROWTYPE;
BEGIN
    -- Serialise the submissions of one employer: the checks below see a stable table.
    PERFORM pg_advisory_xact_lock(hashtext('gateway:' || p_employer_id));
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO d FROM declarations
        WHERE employer_id = p_employer_id AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            outcome := CASE WHEN d.payload_sha256 = p_sha THEN 'existing' ELSE 'idempotency_conflict' END;
            other := d.declaration_id;
            r_declaration_id := d.declaration_id; r_period := d.period; r_status := d.status;
            r_received_at := d.received_at; r_sha := d.payload_sha256; r_replaces := d.replaces;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO d FROM declarations
    WHERE employer_id = p_employer_id AND period = p_period AND payload_sha256 = p_sha
    ORDER BY received_at DESC LIMIT 1;
    IF FOUND THEN
        outcome := 'existing';
        r_declaration_id := d.declaration_id; r_period := d.period; r_status := d.status;
        r_received_at := d.received_at; r_sha := d.payload_sha256; r_replaces := d.replaces;
        RETURN;
    END IF;
    IF p_replaces IS NULL THEN
        SELECT declaration_id INTO other FROM declarations
        WHERE employer_id = p_employer_id AND period = p_period AND replaces IS NULL;
        IF FOUND THEN
            outcome := 'duplicate_original';
            RETURN;
        END IF;
    ELSE
        SELECT * INTO d FROM declarations
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
        UPDATE declarations SET superseded_by = p_declaration_id WHERE declaration_id = p_replaces;
    END IF;
    INSERT INTO declarations (declaration_id, employer_id, period, replaces, status, payload_sha256,
                              idempotency_key, line_count, received_at)
    VALUES (p_declaration_id, p_employer_id, p_period, p_replaces, 'received', p_sha,
            p_idempotency_key, p_line_count, p_now);
    INSERT INTO outbox (event_id, topic, key, value)
    VALUES (p_event_id, p_topic, convert_to(p_employer_id, 'UTF8'), p_value);
    outcome := 'created';
    r_declaration_id := p_declaration_id; r_period := p_period; r_status := 'received';
    r_received_at := p_now; r_sha := p_sha; r_replaces := p_replaces;
END
$$;

-- The employer's list, newest first, and the back office's list across employers by period.
CREATE INDEX declarations_by_period ON declarations (period, received_at);
