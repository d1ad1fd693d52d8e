-- The PostgreSQL schema: the SQLite schema of migrations 0001–0003 in one
-- file, with PostgreSQL's types (every integer BIGINT: amounts are u32,
-- times u64 seconds; blobs BYTEA). Constraint and index names are the ones
-- the server maps refusals from: never rename them.

CREATE TABLE transactions (
    merchant_id       TEXT NOT NULL,
    txn_id            TEXT NOT NULL,
    -- The merchant's order a transaction pays; several attempts may pay one order.
    order_ref         TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL
        CHECK (state IN ('created', 'drawn', 'debited', 'confirmed', 'settled', 'failed', 'reversed', 'unknown')),
    verify_mode       TEXT NOT NULL,
    amount            BIGINT NOT NULL,
    currency          BIGINT NOT NULL,
    exponent          BIGINT NOT NULL,
    purse             BIGINT NOT NULL,
    origin            TEXT NOT NULL,
    card_id           TEXT NOT NULL,
    card_expiry       TEXT NOT NULL,
    key_version       BIGINT NOT NULL,
    atc               BIGINT NOT NULL,
    card_random       BYTEA NOT NULL,
    balance_before    BIGINT NOT NULL,
    balance_after     BIGINT NOT NULL,
    seq               BIGINT NOT NULL,
    date              TEXT NOT NULL,
    time              TEXT NOT NULL,
    expected_s3       BYTEA NOT NULL,
    draw_hash         BYTEA NOT NULL,
    draw_response     TEXT NOT NULL,
    complete_hash     BYTEA,
    complete_response TEXT,
    card_s3           BYTEA,
    card_sw           BIGINT,
    resolution        TEXT,
    -- The session's expiry: a drawn transaction past it (plus a grace) becomes unknown.
    expires_at        BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    drawn_at          BIGINT NOT NULL,
    debited_at        BIGINT,
    confirmed_at      BIGINT,
    updated_at        BIGINT NOT NULL,
    -- Idempotency by txn id, across instances.
    CONSTRAINT transactions_txn_id PRIMARY KEY (merchant_id, txn_id)
);
-- One draw per INITIALIZE of a card: a replayed draw request is refused.
CREATE UNIQUE INDEX transactions_card_atc ON transactions (card_id, atc);
-- At most one undecided attempt per order, whichever instance draws it.
CREATE UNIQUE INDEX transactions_open_order
    ON transactions (merchant_id, order_ref)
    WHERE order_ref <> '' AND state IN ('drawn', 'unknown');
CREATE INDEX transactions_order ON transactions (merchant_id, order_ref);
CREATE INDEX transactions_state ON transactions (state, drawn_at);
-- A card's transactions the card's log can still decide.
CREATE INDEX transactions_card_undecided
    ON transactions (card_id, atc) WHERE state IN ('drawn', 'unknown', 'failed');
CREATE INDEX transactions_drawn_expiry
    ON transactions (expires_at) WHERE state = 'drawn';

CREATE TABLE txn_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    event       TEXT NOT NULL,
    state       TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    at          BIGINT NOT NULL
);
CREATE INDEX txn_log_txn ON txn_log (merchant_id, txn_id);

CREATE TABLE suspicious_reports (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    page_origin TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX suspicious_txn ON suspicious_reports (merchant_id, txn_id);

-- Security module sequence numbers, reserved in blocks by each instance.
CREATE TABLE sm_counter (
    terminal TEXT PRIMARY KEY,
    seq      BIGINT NOT NULL
);

-- Webhooks to deliver, written in the same database transaction as the state
-- change they report; leased by one deliverer at a time (SKIP LOCKED).
CREATE TABLE webhook_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    -- The recipient's id: a merchant (purchases) or a bank (loads).
    merchant_id     TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    lease_until     BIGINT,
    delivered_at    BIGINT,
    last_error      TEXT,
    audience        TEXT NOT NULL DEFAULT 'merchant'
);
CREATE INDEX webhook_outbox_due
    ON webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Loads (the load server): one row per load session of a bank, from the
-- draw (or the bank's void of a load never drawn) to its decision.
CREATE TABLE loads (
    bank_id           TEXT NOT NULL,
    txn_id            TEXT NOT NULL,
    account_ref       TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL
        CHECK (state IN ('drawn', 'credited', 'settled', 'failed', 'voided', 'unknown')),
    amount            BIGINT NOT NULL,
    currency          BIGINT NOT NULL,
    exponent          BIGINT NOT NULL,
    purse             BIGINT NOT NULL,
    origin            TEXT NOT NULL DEFAULT '',
    -- What the HSM drew on (NULL for a load voided before any draw).
    card_id           TEXT,
    card_expiry       TEXT,
    key_version       BIGINT,
    atc               BIGINT,
    card_random       BYTEA,
    balance_before    BIGINT,
    balance_after     BIGINT,
    max_balance       BIGINT,
    date              TEXT,
    time              TEXT,
    expected_s3       BYTEA,
    draw_hash         BYTEA,
    draw_response     TEXT,
    -- The decision and its proof.
    complete_hash     BYTEA,
    complete_response TEXT,
    card_s3           BYTEA,
    card_answer       BYTEA,
    proof             TEXT,
    resolution        TEXT,
    expires_at        BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    decided_at        BIGINT,
    updated_at        BIGINT NOT NULL,
    CONSTRAINT loads_txn_id PRIMARY KEY (bank_id, txn_id)
);
-- One load per INITIALIZE of a card: a replayed load request is refused.
CREATE UNIQUE INDEX loads_card_atc ON loads (card_id, atc);
CREATE INDEX loads_card_open
    ON loads (card_id) WHERE state IN ('drawn', 'unknown', 'failed');
CREATE INDEX loads_drawn_expiry ON loads (expires_at) WHERE state = 'drawn';
CREATE INDEX loads_bank_state ON loads (bank_id, state);

CREATE TABLE load_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bank_id TEXT NOT NULL,
    txn_id  TEXT NOT NULL,
    event   TEXT NOT NULL,
    state   TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '',
    at      BIGINT NOT NULL
);
CREATE INDEX load_log_txn ON load_log (bank_id, txn_id);
