-- When a user was last seen online, kept across restarts for presence.
ALTER TABLE users ADD COLUMN last_seen INTEGER;
