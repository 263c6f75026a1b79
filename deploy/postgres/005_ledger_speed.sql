-- Ledger, version 5. A declaration's report is written once by the ledger and read whole by
-- the gateway, never queried inside: `json` keeps the text as written, which PostgreSQL only
-- checks, where `jsonb` parsed multi-MB reports into a tree on every write (about 3x the
-- cost) and printed them back on every read. Same content, same column; lz4 as before.
ALTER TABLE declarations ALTER COLUMN report TYPE json USING report::json;
ALTER TABLE declarations ALTER COLUMN report SET COMPRESSION lz4;
