-- A record is posted once per (kind, party, txn id): the same rule as
-- `records_posted_once`, with the txn id first. Posting asks for a few hundred
-- txn ids of one party at a time; PostgreSQL, before its statistics caught up
-- with a table that grew by thousands of rows in one run, used only
-- (kind, party) of the old index and filtered every posted record of the
-- party, once per query (posting slowed with every batch). With the txn id
-- leading, any use of the index is a lookup by txn id.
CREATE UNIQUE INDEX IF NOT EXISTS records_posted_once_by_txn
    ON records (txn_id, kind, party) WHERE status = 'posted';
DROP INDEX IF EXISTS records_posted_once;
