-- Workers known to Kalo. A worker first seen in a declaration is pre-registered (from the
-- kalo.workers.registrations topic) so that the institution can complete the record.
CREATE TABLE workers (
    worker_id            text PRIMARY KEY,
    first_employer_id    text NOT NULL,
    first_period         text NOT NULL,
    first_declaration_id text NOT NULL,
    status               text NOT NULL DEFAULT 'preregistered'
                         CHECK (status IN ('preregistered', 'registered')),
    created_at           timestamptz NOT NULL DEFAULT now()
);
