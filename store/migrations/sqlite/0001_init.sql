-- Users exist implicitly from their first valid token or from being added to a room.
CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

CREATE TABLE rooms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    private    INTEGER NOT NULL DEFAULT 0,
    owner_id   TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    room_id   TEXT NOT NULL REFERENCES rooms(id),
    user_id   TEXT NOT NULL REFERENCES users(id),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX members_user ON members(user_id);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    TEXT NOT NULL REFERENCES rooms(id),
    author_id  TEXT NOT NULL REFERENCES users(id),
    text       TEXT NOT NULL,
    client_id  TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_room ON messages(room_id, id);
CREATE UNIQUE INDEX messages_client ON messages(room_id, author_id, client_id) WHERE client_id IS NOT NULL;

-- A member's read position in a room; it only moves forward.
CREATE TABLE reads (
    room_id    TEXT NOT NULL REFERENCES rooms(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    message_id INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- The event log. AUTOINCREMENT keeps seq strictly increasing and never reused,
-- even after retention deletes old rows, so a position is never ambiguous.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    subject    TEXT NOT NULL DEFAULT '',
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_room ON events(room_id, seq);
CREATE INDEX events_subject ON events(subject, seq) WHERE subject <> '';
CREATE INDEX events_created ON events(created_at);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
