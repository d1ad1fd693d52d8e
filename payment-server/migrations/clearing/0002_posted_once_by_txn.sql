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

-- A card's proof counts once: the card's ATC is new for every transaction
-- it makes, so one (card, ATC) behind two posted records of a kind is the
-- same debit or credit cleared twice under two txn ids (S3 does not cover
-- the source's txn id). `proof_key` = the first 16 bytes, hex, of
-- SHA-256("cardpay/clearing-proof" || 0 || card id (8 bytes BCD) || ATC (2 bytes));
-- rows posted before this migration have none and are not compared.
ALTER TABLE records ADD COLUMN proof_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS records_proof_once
    ON records (proof_key, kind) WHERE status = 'posted' AND proof_key IS NOT NULL;
