-- Edits, deletions, room management, direct messages and the server API:
-- the same as SQLite's 0003_chat.sql, in PostgreSQL's types.

ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;

ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'room';
ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN dm_key TEXT;
CREATE UNIQUE INDEX rooms_dm ON rooms(dm_key) WHERE dm_key IS NOT NULL;
ALTER TABLE members ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE deleted_rooms (
    id         TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);

ALTER TABLE users ADD COLUMN revoked_before BIGINT;

INSERT INTO users (id, name, created_at) VALUES ('', '', 0) ON CONFLICT (id) DO NOTHING;

CREATE TABLE server_requests (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    body        BYTEA,
    created_at  BIGINT NOT NULL
);
CREATE INDEX server_requests_created ON server_requests(created_at);
