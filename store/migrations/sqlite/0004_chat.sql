-- Edits and deletions. A deleted message stays, without its text, as a
-- tombstone: clients that cached it learn to drop it.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;

-- Room management and direct messages. kind is 'room' or 'dm'. A DM's
-- dm_key names its two members ("a b", in order: ids have no spaces), so
-- that a pair has one DM however many ask for it at once.
ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'room';
ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN dm_key TEXT;
CREATE UNIQUE INDEX rooms_dm ON rooms(dm_key) WHERE dm_key IS NOT NULL;
-- A member who left a DM has it hidden from their list until its next message.
ALTER TABLE members ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;

-- The ids of deleted rooms, which are never given to another room.
CREATE TABLE deleted_rooms (
    id         TEXT PRIMARY KEY,
    deleted_at INTEGER NOT NULL
);

-- A user's tokens issued before revoked_before (Unix ms) are refused.
ALTER TABLE users ADD COLUMN revoked_before INTEGER;

-- The system: the author of the server API's system messages and the
-- owner of the rooms it provisions without one, and of DMs. No token can
-- name it: a user id has at least one character.
INSERT INTO users (id, name, created_at) VALUES ('', '', 0) ON CONFLICT (id) DO NOTHING;

-- Server API requests by request id, so that a retry is answered as the
-- first one was rather than done twice. A request's row commits with its
-- change; its answer is recorded after.
CREATE TABLE server_requests (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    body        BLOB,
    created_at  INTEGER NOT NULL
);
CREATE INDEX server_requests_created ON server_requests(created_at);
