-- Ledger, version 4. The reports of the largest employers are several MB of JSON, written
-- in batches by the ledger: lz4 compresses them several times faster than the default pglz.
ALTER TABLE declarations ALTER COLUMN report SET COMPRESSION lz4;
ALTER TABLE declarations ALTER COLUMN totals SET COMPRESSION lz4;
