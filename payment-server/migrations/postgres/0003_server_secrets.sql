-- Secrets of the server itself, made at the first start (insert if absent,
-- then read, so instances on one database share them): `card_ref_key` is
-- K_ref of the merchants' card references.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       BYTEA NOT NULL
);
