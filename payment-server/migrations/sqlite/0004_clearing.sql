-- Clearing: captured purchases are closed into signed batches for the
-- concentration point; clearing's acknowledgement moves them to `settled`.

-- The batch a captured transaction was closed into (NULL: not yet).
ALTER TABLE transactions ADD COLUMN batch_id TEXT;
ALTER TABLE transactions ADD COLUMN settled_at INTEGER;
-- Captured money-purse transactions waiting for the next batch of their merchant.
CREATE INDEX IF NOT EXISTS transactions_unbatched
    ON transactions (merchant_id)
    WHERE batch_id IS NULL AND state IN ('debited', 'confirmed');
CREATE INDEX IF NOT EXISTS transactions_batch ON transactions (batch_id) WHERE batch_id IS NOT NULL;

-- Every batch this server closed, with the exact signed file (so a batch is
-- handed out again byte for byte, never rebuilt differently).
CREATE TABLE IF NOT EXISTS clearing_batches (
    batch_id     TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    party        TEXT NOT NULL,
    closed_at    INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    sha256       BLOB NOT NULL,
    file         TEXT NOT NULL,
    exported_at  INTEGER
);
CREATE INDEX IF NOT EXISTS clearing_batches_party ON clearing_batches (party, closed_at);

-- Completed loads (`credited`) are closed into batches per bank likewise.
ALTER TABLE loads ADD COLUMN batch_id TEXT;
CREATE INDEX IF NOT EXISTS loads_unbatched
    ON loads (bank_id) WHERE batch_id IS NULL AND state = 'credited';
CREATE INDEX IF NOT EXISTS loads_batch ON loads (batch_id) WHERE batch_id IS NOT NULL;
