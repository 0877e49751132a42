// Package event is Herald's event vocabulary: the types of the events that
// streams carry, and the shape of an entry of the ordered log. The store
// writes log entries, the stream package routes and replays them; both
// take the names from here, so that routing can never disagree with what
// was written.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Types of log events: each announces a committed change to a room, has a
// position in the log and is replayed to a client that missed it.
const (
	MessageCreated = "message:created"
	MessageUpdated = "message:updated"
	MessageDeleted = "message:deleted"
	MemberJoined   = "member:joined"
	MemberLeft     = "member:left"
	ReceiptUpdated = "receipt:updated"
	RoomUpdated    = "room:updated"
	// RoomDeleted is logged once per member of the room, about that member
	// (Subject): like MemberLeft, it ends their membership, and it is the
	// last event of the room they get.
	RoomDeleted = "room:deleted"
	// Custom is an app-defined event from the server API: for a room's
	// members (Room set), or for one user's streams (Room empty, Subject
	// the user).
	Custom = "custom"
	// InvitationCreated and InvitationDeleted are for the invitee alone
	// (Room empty, Subject the invitee): an invitation to a room, and its
	// end (accepted, declined, withdrawn, or the room closed). The room's
	// members hear nothing of either: until the invitee joins, nothing
	// about them is theirs to know.
	InvitationCreated = "invitation:created"
	InvitationDeleted = "invitation:deleted"
)

// ForUser reports whether e is for one user's streams alone (its
// Subject), rather than a room's: such an event has no room, and is sent
// and replayed to that user. A disconnect has no room either, but is a
// control event, never sent.
func ForUser(e Event) bool { return e.Room == "" && e.Type != UserDisconnected }

// UserDisconnected is a control event of the log, never sent to clients:
// every instance that reads it closes the streams of the user (Subject),
// and from then on refuses the user's tokens issued before the cut-off in
// its data (DisconnectData). Its Room is empty.
const UserDisconnected = "user:disconnected"

// DisconnectData is the payload of UserDisconnected.
type DisconnectData struct {
	User string `json:"user"`
	// RevokeBefore, when not 0, is the cut-off in Unix milliseconds: the
	// user's tokens issued before it are refused.
	RevokeBefore int64 `json:"revoke_before,omitempty"`
}

// Membership reports whether events of type typ change the membership of
// their Subject: a stream's rooms follow them, in log order.
func Membership(typ string) bool {
	return typ == MemberJoined || typ == MemberLeft || typ == RoomDeleted
}

// Types of ephemeral events: no position, never replayed. A client that
// reconnects refetches presence over REST; typing is over by then.
const (
	PresenceChanged = "presence:changed"
	TypingStarted   = "typing:started"
	TypingStopped   = "typing:stopped"
	// RoomOnline is a large room's count of members online, which its
	// members get instead of each other's presence changes.
	RoomOnline = "room:online"
	// PresenceStale tells a stream that ephemeral events may have been
	// lost on their way to it (its instance was cut off from the others):
	// the client refetches presence, and drops the typists it shows.
	PresenceStale = "presence:stale"
)

// Types of control events, which a stream sends about itself.
const (
	Ready  = "ready"
	Resync = "resync"
)

// Event is one entry of the log.
type Event struct {
	// Seq is the event's position: positions are dense and only grow, so a
	// reader that has seen n has seen every event up to n.
	Seq  int64  `db:"seq"`
	Room string `db:"room_id"`
	Type string `db:"type"`
	// Subject is the user an event is about: the member of a member event
	// or of a room:deleted (membership moves streams between rooms, in log
	// order), or the one user an event with no Room is for. It is "" for
	// the other events of a room.
	Subject string `db:"subject"`
	// Data is the JSON payload, one line.
	Data []byte `db:"data"`
	// CreatedAt is when the change committed, in Unix milliseconds.
	CreatedAt int64 `db:"created_at"`
}

// Query selects a range of the log: the events in (After, UpTo], in order.
type Query struct {
	After, UpTo int64
	// Rooms, when not nil, keeps only these rooms' events.
	Rooms []string
	// Subject, when set, keeps only the events about this user: their
	// membership events and the events for them alone.
	Subject string
	// Limit caps the number of events returned.
	Limit int
}

// ErrTrimmed reports that a log no longer holds the positions asked for.
// Positions are dense, so a reader can always tell a trim from an empty log.
var ErrTrimmed = errors.New("log: position older than the log holds")

// Marshal encodes an event's payload as one line of JSON, leaving <, > and
// & as they are: encoding/json's default escapes each into six bytes
// (\u003c), which an SSE stream does not need, and which would multiply
// the size of a message full of them in every buffer that holds it.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
