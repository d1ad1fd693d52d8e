-- Loads (the load server): one row per load session of a bank, from the
-- draw (or the bank's void of a load never drawn) to its decision.
CREATE TABLE IF NOT EXISTS loads (
    bank_id           TEXT NOT NULL,
    txn_id            TEXT NOT NULL,
    account_ref       TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL,      -- drawn | credited | settled | failed | voided | unknown
    amount            INTEGER NOT NULL,
    currency          INTEGER NOT NULL,
    exponent          INTEGER NOT NULL,
    purse             INTEGER NOT NULL,
    origin            TEXT NOT NULL DEFAULT '',
    -- What the HSM drew on (NULL for a load voided before any draw).
    card_id           TEXT,
    card_expiry       TEXT,
    key_version       INTEGER,
    atc               INTEGER,
    card_random       BLOB,
    balance_before    INTEGER,
    balance_after     INTEGER,
    max_balance       INTEGER,
    date              TEXT,
    time              TEXT,
    expected_s3       BLOB,
    draw_hash         BLOB,
    draw_response     TEXT,
    -- The decision and its proof.
    complete_hash     BLOB,
    complete_response TEXT,
    card_s3           BLOB,
    card_answer       BLOB,
    proof             TEXT,
    resolution        TEXT,
    expires_at        INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    decided_at        INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (bank_id, txn_id)
);
-- One load per INITIALIZE of a card: a replayed load request is refused.
CREATE UNIQUE INDEX IF NOT EXISTS loads_card_atc ON loads (card_id, atc);
-- A card's loads its proofs can still decide.
CREATE INDEX IF NOT EXISTS loads_card_open
    ON loads (card_id) WHERE state IN ('drawn', 'unknown', 'failed');
CREATE INDEX IF NOT EXISTS loads_drawn_expiry ON loads (expires_at) WHERE state = 'drawn';
CREATE INDEX IF NOT EXISTS loads_bank_state ON loads (bank_id, state);

CREATE TABLE IF NOT EXISTS load_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    bank_id TEXT NOT NULL,
    txn_id  TEXT NOT NULL,
    event   TEXT NOT NULL,
    state   TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '',
    at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS load_log_txn ON load_log (bank_id, txn_id);

-- Webhooks go to merchants or to banks; `merchant_id` holds the recipient's id.
ALTER TABLE webhook_outbox ADD COLUMN audience TEXT NOT NULL DEFAULT 'merchant';
