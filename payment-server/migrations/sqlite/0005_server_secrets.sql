-- Secrets of the server itself, made at the first start (insert if absent,
-- then read): `card_ref_key` is K_ref of the merchants' card references.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL
);
