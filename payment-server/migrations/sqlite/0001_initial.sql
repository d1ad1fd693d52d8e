-- The schema of the first release (kept verbatim so its databases upgrade).
CREATE TABLE IF NOT EXISTS transactions (
    merchant_id     TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    state           TEXT NOT NULL,
    verify_mode     TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    currency        INTEGER NOT NULL,
    exponent        INTEGER NOT NULL,
    purse           INTEGER NOT NULL,
    origin          TEXT NOT NULL,
    card_id         TEXT NOT NULL,
    card_expiry     TEXT NOT NULL,
    key_version     INTEGER NOT NULL,
    atc             INTEGER NOT NULL,
    card_random     BLOB NOT NULL,
    balance_before  INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    date            TEXT NOT NULL,
    time            TEXT NOT NULL,
    expected_s3     BLOB NOT NULL,
    draw_hash       BLOB NOT NULL,
    draw_response   TEXT NOT NULL,
    complete_hash   BLOB,
    complete_response TEXT,
    card_s3         BLOB,
    card_sw         INTEGER,
    resolution      TEXT,
    created_at      INTEGER NOT NULL,
    drawn_at        INTEGER NOT NULL,
    debited_at      INTEGER,
    confirmed_at    INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, txn_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS transactions_card_atc ON transactions (card_id, atc);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions (state, drawn_at);
CREATE TABLE IF NOT EXISTS txn_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    event       TEXT NOT NULL,
    state       TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS txn_log_txn ON txn_log (merchant_id, txn_id);
CREATE TABLE IF NOT EXISTS suspicious_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    page_origin TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS suspicious_txn ON suspicious_reports (merchant_id, txn_id);
CREATE TABLE IF NOT EXISTS sm_counter (
    terminal TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
);
