-- Stream tickets already used, until they expire: a ticket opens one
-- stream, also across restarts.
CREATE TABLE spent_tickets (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX spent_tickets_expires ON spent_tickets(expires_at);
