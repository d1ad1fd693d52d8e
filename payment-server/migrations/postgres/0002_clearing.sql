-- Clearing (SQLite's 0004): captured purchases and credited loads are closed
-- into signed batches for the concentration point; clearing's
-- acknowledgement moves them to `settled`.

-- The batch a captured transaction was closed into (NULL: not yet).
ALTER TABLE transactions ADD COLUMN batch_id TEXT;
ALTER TABLE transactions ADD COLUMN settled_at BIGINT;
-- Captured money-purse transactions waiting for the next batch of their merchant.
CREATE INDEX transactions_unbatched
    ON transactions (merchant_id)
    WHERE batch_id IS NULL AND state IN ('debited', 'confirmed');
CREATE INDEX transactions_batch ON transactions (batch_id) WHERE batch_id IS NOT NULL;

-- Every batch closed, with the exact signed file (a batch is handed out again
-- byte for byte, never rebuilt differently). The primary key makes two
-- instances' closes of one batch id one.
CREATE TABLE clearing_batches (
    batch_id     TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    party        TEXT NOT NULL,
    closed_at    BIGINT NOT NULL,
    record_count BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    sha256       BYTEA NOT NULL,
    file         TEXT NOT NULL,
    exported_at  BIGINT
);
CREATE INDEX clearing_batches_party ON clearing_batches (party, closed_at);

-- Credited loads are closed into batches per bank likewise.
ALTER TABLE loads ADD COLUMN batch_id TEXT;
CREATE INDEX loads_unbatched
    ON loads (bank_id) WHERE batch_id IS NULL AND state = 'credited';
CREATE INDEX loads_batch ON loads (batch_id) WHERE batch_id IS NOT NULL;
