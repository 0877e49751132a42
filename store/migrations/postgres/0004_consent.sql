-- Invitations and the membership counts behind the caps: the same as
-- SQLite's 0005_consent.sql, in PostgreSQL's types. Each membership change
-- updates its room's count, which also takes the room's row lock: changes
-- to one room's membership take turns, so a cap is never passed by two
-- joins at once, and a leaving owner's successor is still a member when
-- the change commits.
CREATE TABLE invitations (
    room_id     TEXT NOT NULL REFERENCES rooms(id),
    user_id     TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    declined_at BIGINT,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX invitations_user ON invitations(user_id, created_at);

ALTER TABLE rooms ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET member_count = (SELECT COUNT(*) FROM members WHERE members.room_id = rooms.id);
ALTER TABLE users ADD COLUMN room_count INTEGER NOT NULL DEFAULT 0;
UPDATE users SET room_count = (SELECT COUNT(*) FROM members WHERE members.user_id = users.id);
