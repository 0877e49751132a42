-- The same schema as SQLite's, in PostgreSQL's types, plus what a cluster
-- of instances needs: an outbox that transactions write to, and the log
-- that one sequencer at a time fills from it in one ordered pass.

-- Users exist implicitly from their first valid token or from being added to a room.
CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_seen  BIGINT
);

CREATE TABLE rooms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    private    BOOLEAN NOT NULL DEFAULT FALSE,
    owner_id   TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    room_id   TEXT NOT NULL REFERENCES rooms(id),
    user_id   TEXT NOT NULL REFERENCES users(id),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX members_user ON members(user_id);

-- A room's posts take turns (its row is locked while one is written), so
-- ids commit in order within a room, as history paging needs.
CREATE TABLE messages (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms(id),
    author_id  TEXT NOT NULL REFERENCES users(id),
    text       TEXT NOT NULL,
    client_id  TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_room ON messages(room_id, id);
CREATE UNIQUE INDEX messages_client ON messages(room_id, author_id, client_id) WHERE client_id IS NOT NULL;

-- A member's read position in a room; it only moves forward.
CREATE TABLE reads (
    room_id    TEXT NOT NULL REFERENCES rooms(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    message_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Events of committed changes not yet in the log. A transaction writes its
-- change and its events here together; ids only order the sequencer's pass
-- (they commit out of order, so they are never positions).
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    subject    TEXT NOT NULL DEFAULT '',
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- The log: positions given by the sequencer, dense and in commit order.
CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    subject    TEXT NOT NULL DEFAULT '',
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_room ON events(room_id, seq);
CREATE INDEX events_subject ON events(subject, seq) WHERE subject <> '';
CREATE INDEX events_created ON events(created_at);

-- The newest position given; one row, which a sequencer locks for its pass.
CREATE TABLE log_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
INSERT INTO log_head (seq) VALUES (0);

-- Membership as of the log's head, written in the same pass as the
-- positions: a stream's snapshot is exact as of a position.
CREATE TABLE log_members (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
