-- The clearing database on PostgreSQL: the same tables as
-- migrations/clearing/0001_clearing.sql (SQLite), in PostgreSQL types.
-- Amounts are integers in minor units (EUR cents).

CREATE TABLE IF NOT EXISTS batches (
    batch_id       TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,          -- purchases | loads
    party          TEXT NOT NULL,          -- merchant id | bank id
    source         TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    closed_at      BIGINT NOT NULL,
    record_count   BIGINT NOT NULL,
    total          BIGINT NOT NULL,
    sha256         BYTEA NOT NULL UNIQUE,  -- of the signed payload
    file           TEXT NOT NULL,          -- the file as received (evidence)
    state          TEXT NOT NULL,          -- received → posted → acked
    next_record    BIGINT NOT NULL DEFAULT 0,
    received_at    BIGINT NOT NULL,
    posted_at      BIGINT,
    acked_at       BIGINT,
    accepted_count BIGINT,
    accepted_total BIGINT,
    fee_total      BIGINT,
    rejected_count BIGINT
);

CREATE TABLE IF NOT EXISTS records (
    id            BIGSERIAL PRIMARY KEY,
    batch_id      TEXT NOT NULL REFERENCES batches (batch_id),
    idx           BIGINT NOT NULL,
    kind          TEXT NOT NULL,           -- purchase | load
    party         TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    atc           BIGINT NOT NULL,
    amount        BIGINT NOT NULL,
    fee           BIGINT NOT NULL DEFAULT 0,
    business_date TEXT NOT NULL,           -- YYYY-MM-DD (UTC) of capture/load
    status        TEXT NOT NULL,           -- posted | rejected
    reason_code   TEXT,
    reason        TEXT,
    body          TEXT NOT NULL,           -- the record as in the batch, to check again
    payout_id     TEXT,
    UNIQUE (batch_id, idx)
);
-- A transaction is posted once, whatever batch brings it again.
CREATE UNIQUE INDEX IF NOT EXISTS records_posted_once
    ON records (kind, party, txn_id) WHERE status = 'posted';
CREATE INDEX IF NOT EXISTS records_unpaid
    ON records (party, business_date) WHERE status = 'posted' AND kind = 'purchase' AND payout_id IS NULL;
CREATE INDEX IF NOT EXISTS records_payout ON records (payout_id) WHERE payout_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_rejected ON records (batch_id) WHERE status = 'rejected';

-- The ledger: a journal entry (what and why) and its postings (+ debit, − credit).
CREATE TABLE IF NOT EXISTS journal (
    id    BIGSERIAL PRIMARY KEY,
    kind  TEXT NOT NULL,                   -- purchases | fees | loads | payout
    ref   TEXT NOT NULL,                   -- batch id or payout id
    memo  TEXT NOT NULL,
    at    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_ref ON journal (ref);
CREATE TABLE IF NOT EXISTS postings (
    id         BIGSERIAL PRIMARY KEY,
    journal_id BIGINT NOT NULL REFERENCES journal (id),
    account    TEXT NOT NULL,
    amount     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_journal ON postings (journal_id);
CREATE INDEX IF NOT EXISTS postings_account ON postings (account);

CREATE TABLE IF NOT EXISTS payouts (
    payout_id     TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    business_date TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    gross         BIGINT NOT NULL,
    fees          BIGINT NOT NULL,
    amount        BIGINT NOT NULL,
    count         BIGINT NOT NULL,
    reference     TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    exported_at   BIGINT,
    UNIQUE (merchant_id, business_date, seq)
);
CREATE INDEX IF NOT EXISTS payouts_run ON payouts (run_id);

-- Files refused whole (torn, altered, unknown signer), for the operator.
CREATE TABLE IF NOT EXISTS refused_files (
    id      BIGSERIAL PRIMARY KEY,
    name    TEXT NOT NULL,
    sha256  BYTEA NOT NULL,
    reason  TEXT NOT NULL,
    at      BIGINT NOT NULL
);
