-- Stream tickets already used, until they expire (a cluster keeps them in
-- Redis; this table serves a store used on its own).
CREATE TABLE spent_tickets (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX spent_tickets_expires ON spent_tickets(expires_at);
