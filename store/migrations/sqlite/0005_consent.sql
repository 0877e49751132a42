-- Invitations: a room's owner asks a user to join it, and the user
-- accepts (by joining) or declines. A declined invitation stays, so that
-- whoever invited cannot tell it from one still pending, and asking again
-- does not ask the user again; the owner may withdraw either. Its user
-- need not exist yet: users exist from their first token, and an
-- invitation waits for them.
CREATE TABLE invitations (
    room_id     TEXT NOT NULL REFERENCES rooms(id),
    user_id     TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    declined_at INTEGER,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX invitations_user ON invitations(user_id, created_at);

-- Counts kept with each membership change, so that the caps on members
-- per room and rooms per user are one conditional update, not a count.
ALTER TABLE rooms ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET member_count = (SELECT COUNT(*) FROM members WHERE members.room_id = rooms.id);
ALTER TABLE users ADD COLUMN room_count INTEGER NOT NULL DEFAULT 0;
UPDATE users SET room_count = (SELECT COUNT(*) FROM members WHERE members.user_id = users.id);
