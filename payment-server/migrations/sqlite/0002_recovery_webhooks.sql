-- Recovery by the card's log, one capture per order, signed webhooks.

-- The merchant's order a transaction pays; several attempts may pay one order.
ALTER TABLE transactions ADD COLUMN order_ref TEXT NOT NULL DEFAULT '';
-- The session's expiry: a drawn transaction past it (plus a grace) becomes unknown.
ALTER TABLE transactions ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;

-- At most one undecided attempt per order: a second draw for the order waits
-- until the first is decided (the constraint holds across server instances).
CREATE UNIQUE INDEX IF NOT EXISTS transactions_open_order
    ON transactions (merchant_id, order_ref)
    WHERE order_ref <> '' AND state IN ('drawn', 'unknown');
CREATE INDEX IF NOT EXISTS transactions_order ON transactions (merchant_id, order_ref);
-- A card's transactions the card's log can still decide.
CREATE INDEX IF NOT EXISTS transactions_card_undecided
    ON transactions (card_id, atc) WHERE state IN ('drawn', 'unknown', 'failed');
CREATE INDEX IF NOT EXISTS transactions_drawn_expiry
    ON transactions (expires_at) WHERE state = 'drawn';

-- Webhooks to deliver, written in the same database transaction as the state
-- change they report; delivered at least once, with backoff, across restarts.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    merchant_id     TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due
    ON webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL;
