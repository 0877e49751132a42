package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/store"
)

// The contract of invitations, caps and owners who leave.

// userEvents lists "type reason" of the events in evs for user alone (no
// room): invitations, and why they ended.
func userEvents(evs []event.Event, user string) []string {
	var out []string
	for _, e := range evs {
		if !event.ForUser(e) || e.Subject != user {
			continue
		}
		var d struct{ Reason string }
		json.Unmarshal(e.Data, &d)
		out = append(out, strings.TrimSpace(e.Type+" "+d.Reason))
	}
	return out
}

// An owner's invitation reaches the invitee alone; the room learns
// nothing of the invitee until they join, which accepts it. Declined, it
// stays declined as far as the owner can tell: asking again tells the
// user nothing, and the owner may withdraw it as if it were open.
func testInvitations(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "secret", true))
	aliceA := store.UserActor("alice")
	start := head(t, db, st)

	if member, err := st.Invite(ctx, aliceA, room.ID, "bob"); err != nil || member {
		t.Fatalf("Invite(bob) = %v, %v; want an invitation", member, err)
	}
	if member, err := st.Invite(ctx, aliceA, room.ID, "bob"); err != nil || member {
		t.Fatalf("Invite(bob) again = %v, %v; want the same answer", member, err)
	}
	if member, err := st.Invite(ctx, aliceA, room.ID, "alice"); err != nil || !member {
		t.Errorf("Invite(alice), a member = %v, %v; want member", member, err)
	}
	if members := must[[]store.Member](t, "Members")(st.Members(ctx, "alice", room.ID)); len(members) != 1 {
		t.Errorf("Members while bob is invited = %+v; want alice alone", members)
	}
	if ok := must[bool](t, "SharesRoom")(st.SharesRoom(ctx, "alice", "bob")); ok {
		t.Errorf("SharesRoom(alice, bob) while bob is invited = true; want false")
	}
	if evs := logSince(t, db, st, start); !slices.Equal(types(evs), []string{"invitation:created bob"}) || evs[0].Room != "" {
		t.Fatalf("log of two invitations of bob = %q; want one invitation:created, for bob alone", types(evs))
	}
	invs := must[[]store.Invitation](t, "Invitations")(st.Invitations(ctx, "bob"))
	if len(invs) != 1 || invs[0].Room != room.ID || invs[0].Name != "secret" || !invs[0].Private || invs[0].By != "alice" || invs[0].ByName != "Alice" {
		t.Fatalf("Invitations(bob) = %+v; want alice's to secret", invs)
	}

	for _, tt := range []struct {
		name string
		do   func() error
		want error
	}{
		{"invite by a non-owner", func() error { _, err := st.Invite(ctx, store.UserActor("bob"), room.ID, "carol"); return err }, store.ErrNotOwner},
		{"invite to an unknown room", func() error { _, err := st.Invite(ctx, aliceA, "r_nope", "carol"); return err }, store.ErrRoomNotFound},
		{"join uninvited", func() error { _, err := st.Join(ctx, carol, room.ID); return err }, store.ErrPrivateRoom},
		{"decline without an invitation", func() error { return st.Decline(ctx, "carol", room.ID) }, store.ErrNoInvitation},
		{"decline an unknown room", func() error { return st.Decline(ctx, "carol", "r_nope") }, store.ErrNoInvitation},
	} {
		if err := tt.do(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}

	start = head(t, db, st)
	if joined, err := st.Join(ctx, bob, room.ID); err != nil || !joined {
		t.Fatalf("Join(bob) with an invitation = %v, %v; want joined", joined, err)
	}
	if got := types(logSince(t, db, st, start)); !slices.Equal(got, []string{"member:joined bob", "invitation:deleted bob"}) {
		t.Errorf("log of bob's acceptance = %q; want his join, then his invitation's end", got)
	}
	if invs := must[[]store.Invitation](t, "Invitations")(st.Invitations(ctx, "bob")); len(invs) != 0 {
		t.Errorf("Invitations(bob) after joining = %+v; want none", invs)
	}

	// Carol declines: asked again, she hears nothing; she cannot join; the
	// owner withdraws it as an open one, and may ask again.
	must[bool](t, "Invite")(st.Invite(ctx, aliceA, room.ID, "carol"))
	start = head(t, db, st)
	if err := st.Decline(ctx, "carol", room.ID); err != nil {
		t.Fatalf("Decline = %v", err)
	}
	if err := st.Decline(ctx, "carol", room.ID); !errors.Is(err, store.ErrNoInvitation) {
		t.Errorf("Decline again = %v; want ErrNoInvitation", err)
	}
	if member, err := st.Invite(ctx, aliceA, room.ID, "carol"); err != nil || member {
		t.Errorf("Invite(carol) after she declined = %v, %v; want the answer of an open invitation", member, err)
	}
	if _, err := st.Join(ctx, carol, room.ID); !errors.Is(err, store.ErrPrivateRoom) {
		t.Errorf("Join after declining = %v; want ErrPrivateRoom", err)
	}
	if invs := must[[]store.Invitation](t, "Invitations")(st.Invitations(ctx, "carol")); len(invs) != 0 {
		t.Errorf("Invitations(carol) after declining = %+v; want none", invs)
	}
	if err := st.RemoveMember(ctx, aliceA, room.ID, "carol"); err != nil {
		t.Errorf("withdrawing a declined invitation = %v; want nil, as for an open one", err)
	}
	if err := st.RemoveMember(ctx, aliceA, room.ID, "carol"); !errors.Is(err, store.ErrMemberNotFound) {
		t.Errorf("withdrawing it again = %v; want ErrMemberNotFound", err)
	}
	must[bool](t, "Invite")(st.Invite(ctx, aliceA, room.ID, "carol"))
	if got := userEvents(logSince(t, db, st, start), "carol"); !slices.Equal(got, []string{"invitation:deleted declined", "invitation:created"}) {
		t.Errorf("carol's events from declining to being asked again after a withdrawal = %q", got)
	}

	// An open invitation withdrawn, and one whose room closes, end for
	// their invitee.
	start = head(t, db, st)
	if err := st.RemoveMember(ctx, aliceA, room.ID, "carol"); err != nil {
		t.Fatalf("withdrawing an open invitation = %v", err)
	}
	must[bool](t, "Invite")(st.Invite(ctx, aliceA, room.ID, "dave"))
	if err := st.DeleteRoom(ctx, aliceA, room.ID); err != nil {
		t.Fatalf("DeleteRoom = %v", err)
	}
	evs := logSince(t, db, st, start)
	if got := userEvents(evs, "carol"); !slices.Equal(got, []string{"invitation:deleted withdrawn"}) {
		t.Errorf("carol's events = %q; want her invitation withdrawn", got)
	}
	if got := userEvents(evs, "dave"); !slices.Equal(got, []string{"invitation:created", "invitation:deleted room_deleted"}) {
		t.Errorf("dave's events = %q; want his invitation, then its end with the room", got)
	}
	if invs := must[[]store.Invitation](t, "Invitations")(st.Invitations(ctx, "dave")); len(invs) != 0 {
		t.Errorf("Invitations(dave) after the room closed = %+v; want none", invs)
	}
	dm, _, err := st.OpenDM(ctx, alice, "bob", false)
	if err != nil {
		t.Fatalf("OpenDM = %v", err)
	}
	if _, err := st.Invite(ctx, aliceA, dm.ID, "carol"); !errors.Is(err, store.ErrDMRoom) {
		t.Errorf("Invite into a DM = %v; want ErrDMRoom", err)
	}
}

// A DM opened with invite asks its peer, who may not exist yet: until
// they accept, the opener sees no name of theirs and no presence, and may
// post. Opening it from the other side accepts it.
func testDMInvitations(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, bob, "bob was here", false)) // bob exists, named Bob
	start := head(t, db, st)
	dm, created, err := st.OpenDM(ctx, alice, "nobody-yet", true)
	if err != nil || !created {
		t.Fatalf("OpenDM(alice, nobody-yet, invite) = %+v, %v, %v; want created, as for anyone", dm, created, err)
	}
	if _, _, err := st.OpenDM(ctx, alice, "", true); !errors.Is(err, store.ErrUserNotFound) {
		t.Errorf("OpenDM with the system = %v; want ErrUserNotFound", err)
	}
	bobDM, created, err := st.OpenDM(ctx, alice, "bob", true)
	if err != nil || !created {
		t.Fatalf("OpenDM(alice, bob, invite) = %v, %v", created, err)
	}
	peer := func(user, room string) *store.User {
		t.Helper()
		for _, r := range must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, user)) {
			if r.ID == room {
				return r.Peer
			}
		}
		t.Fatalf("Rooms(%s) has no %s", user, room)
		return nil
	}
	if p := peer("alice", bobDM.ID); p == nil || p.ID != "bob" || p.Name != "" {
		t.Errorf("alice's dm with bob before he accepts: peer %+v; want bob's id alone", p)
	}
	if members := must[[]store.Member](t, "Members")(st.Members(ctx, "alice", bobDM.ID)); len(members) != 1 || members[0].User != "alice" {
		t.Errorf("Members of the dm before bob accepts = %+v; want alice alone", members)
	}
	if ok := must[bool](t, "SharesRoom")(st.SharesRoom(ctx, "alice", "bob")); ok {
		t.Errorf("SharesRoom(alice, bob) before he accepts = true")
	}
	if _, _, err := st.PostMessage(ctx, alice, bobDM.ID, "hello bob", ""); err != nil {
		t.Errorf("posting in a dm not accepted yet = %v", err)
	}
	invs := must[[]store.Invitation](t, "Invitations")(st.Invitations(ctx, "bob"))
	if len(invs) != 1 || invs[0].Room != bobDM.ID || invs[0].Kind != store.KindDM || invs[0].By != "alice" || invs[0].ByName != "Alice" {
		t.Fatalf("Invitations(bob) = %+v; want alice's dm", invs)
	}
	// Bob opens the dm himself: that accepts it.
	again, created, err := st.OpenDM(ctx, bob, "alice", true)
	if err != nil || created || again.ID != bobDM.ID {
		t.Fatalf("OpenDM(bob, alice) = %+v, %v, %v; want %s, accepted", again, created, err, bobDM.ID)
	}
	if p := peer("alice", bobDM.ID); p == nil || p.Name != "Bob" {
		t.Errorf("alice's dm after bob accepted: peer %+v; want Bob", p)
	}
	if p := peer("bob", bobDM.ID); p == nil || p.ID != "alice" || p.Name != "Alice" {
		t.Errorf("bob's dm: peer %+v; want Alice", p)
	}
	// The user who did not exist shows up and joins by the invitation.
	if joined, err := st.Join(ctx, store.User{ID: "nobody-yet", Name: "Newcomer"}, dm.ID); err != nil || !joined {
		t.Errorf("Join by the invitee who came later = %v, %v", joined, err)
	}
	want := []string{"member:joined alice", "invitation:created nobody-yet", "member:joined alice", "invitation:created bob",
		"message:created", "member:joined bob", "invitation:deleted bob", "member:joined nobody-yet", "invitation:deleted nobody-yet"}
	if got := types(logSince(t, db, st, start)); !slices.Equal(got, want) {
		t.Errorf("log of the dms = %q; want %q", got, want)
	}
	if _, err := st.Join(ctx, carol, dm.ID); !errors.Is(err, store.ErrPrivateRoom) {
		t.Errorf("an outsider joining the dm = %v; want ErrPrivateRoom", err)
	}
}

// The caps on members per room and rooms per user refuse a join past
// them, whatever the way in, and free a place when a member leaves.
func testCaps(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{MaxRoomsPerUser: 2, MaxRoomMembers: 3})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	must[bool](t, "Join")(st.Join(ctx, bob, room.ID))
	must[bool](t, "Join")(st.Join(ctx, carol, room.ID))
	dave := store.User{ID: "dave"}
	if _, err := st.Join(ctx, dave, room.ID); !errors.Is(err, store.ErrRoomFull) {
		t.Errorf("a fourth member joining = %v; want ErrRoomFull", err)
	}
	if _, err := st.AddMember(ctx, store.Admin, room.ID, dave); !errors.Is(err, store.ErrRoomFull) {
		t.Errorf("the backend adding a fourth member = %v; want ErrRoomFull", err)
	}
	if _, _, err := st.ProvisionRoom(ctx, store.Provision{Name: "p", Members: []store.User{alice, bob, carol, dave}}); !errors.Is(err, store.ErrRoomFull) {
		t.Errorf("provisioning a room of four = %v; want ErrRoomFull", err)
	}
	if err := st.Leave(ctx, "carol", room.ID); err != nil {
		t.Fatal(err)
	}
	must[bool](t, "Join")(st.Join(ctx, dave, room.ID))

	// Alice is in one room: a second, then no third, by any way.
	second := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "second", true))
	before := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "alice"))
	if _, err := st.CreateRoom(ctx, alice, "third", false); !errors.Is(err, store.ErrTooManyRooms) {
		t.Errorf("creating a third room = %v; want ErrTooManyRooms", err)
	}
	other := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, carol, "carol's", false))
	if _, err := st.Join(ctx, alice, other.ID); !errors.Is(err, store.ErrTooManyRooms) {
		t.Errorf("joining a third room = %v; want ErrTooManyRooms", err)
	}
	if _, _, err := st.OpenDM(ctx, alice, "carol", false); !errors.Is(err, store.ErrTooManyRooms) {
		t.Errorf("opening a third room, a dm = %v; want ErrTooManyRooms", err)
	}
	if after := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "alice")); len(after) != len(before) {
		t.Errorf("alice's rooms after the refusals: %d; want %d, no room left behind", len(after), len(before))
	}
	// Closing a room frees its members' places.
	if err := st.DeleteRoom(ctx, store.UserActor("alice"), second.ID); err != nil {
		t.Fatal(err)
	}
	must[bool](t, "Join")(st.Join(ctx, alice, other.ID))

	// Invitations: a room takes as many as it may have members.
	inviting := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, dave, "invites", true))
	for i := range 3 {
		must[bool](t, "Invite")(st.Invite(ctx, store.UserActor("dave"), inviting.ID, fmt.Sprint("u", i)))
	}
	if _, err := st.Invite(ctx, store.UserActor("dave"), inviting.ID, "u3"); !errors.Is(err, store.ErrTooManyInvites) {
		t.Errorf("a fourth invitation to a room of three = %v; want ErrTooManyInvites", err)
	}

	// A user with as many open invitations as they may have rooms is not
	// told of a third; to the inviter it looks like any other: the same
	// answer, withdrawn the same way. The user cannot accept it.
	for _, owner := range []store.User{bob, carol} {
		r := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, store.User{ID: owner.ID + "-2"}, "asks", true))
		must[bool](t, "Invite")(st.Invite(ctx, store.UserActor(owner.ID+"-2"), r.ID, "popular"))
	}
	third := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, store.User{ID: "erin"}, "one more", true))
	start := head(t, db, st)
	if member, err := st.Invite(ctx, store.UserActor("erin"), third.ID, "popular"); err != nil || member {
		t.Errorf("a third invitation of a user who may have two rooms = %v, %v; want the answer of any invitation", member, err)
	}
	if got := userEvents(logSince(t, db, st, start), "popular"); len(got) != 0 {
		t.Errorf("the user's events after a third invitation = %q; want none", got)
	}
	if invs := must[[]store.Invitation](t, "Invitations")(st.Invitations(ctx, "popular")); len(invs) != 2 {
		t.Errorf("Invitations(popular) = %d; want the first two", len(invs))
	}
	if _, err := st.Join(ctx, store.User{ID: "popular"}, third.ID); !errors.Is(err, store.ErrPrivateRoom) {
		t.Errorf("joining the room of the third invitation = %v; want ErrPrivateRoom", err)
	}
	if err := st.RemoveMember(ctx, store.UserActor("erin"), third.ID, "popular"); err != nil {
		t.Errorf("withdrawing the third invitation = %v; want nil, as for any invitation", err)
	}
}

// Joins racing for a room's last place, or for a user's last room, on
// stores that write the database at once: exactly as many pass as fit.
func testConcurrentCaps(t *testing.T, db Database) {
	ctx := context.Background()
	opts := store.Options{MaxRoomsPerUser: 3, MaxRoomMembers: 3}
	a, b := openTwo(t, db, opts)
	room := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, alice, "r", false))
	var rooms []string
	for i := range 8 {
		r := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, store.User{ID: fmt.Sprint("owner", i)}, "r", false))
		rooms = append(rooms, r.ID)
	}
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		inRoom, bobJoined int
	)
	for i := range 16 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			var err error
			var counter *int
			if i < 8 {
				_, err = st.Join(ctx, store.User{ID: fmt.Sprint("u", i)}, room.ID)
				counter = &inRoom
			} else {
				_, err = st.Join(ctx, bob, rooms[i-8])
				counter = &bobJoined
			}
			switch {
			case err == nil:
				mu.Lock()
				*counter++
				mu.Unlock()
			case !errors.Is(err, store.ErrRoomFull) && !errors.Is(err, store.ErrTooManyRooms):
				t.Errorf("racing join %d = %v", i, err)
			}
		})
	}
	wg.Wait()
	if inRoom != 2 {
		t.Errorf("8 joins racing for a room of 3 with its owner in it: %d passed; want 2", inRoom)
	}
	if bobJoined != 3 {
		t.Errorf("8 joins of bob racing, 3 rooms allowed: %d passed; want 3", bobJoined)
	}
	members := must[[]store.Member](t, "Members")(a.Members(ctx, "alice", room.ID))
	if len(members) != 3 {
		t.Errorf("the room has %d members; want 3", len(members))
	}
	if rs := must[[]store.RoomSummary](t, "Rooms")(a.Rooms(ctx, "bob")); len(rs) != 3 {
		t.Errorf("bob is in %d rooms; want 3", len(rs))
	}
}

// An owner who leaves hands the room to the member who has been in it
// longest, announced with room:updated; the last one leaves it to no one.
// The owner who left keeps no power over it.
func testOwnerLeaves(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", true))
	must[bool](t, "AddMember")(st.AddMember(ctx, store.UserActor("alice"), room.ID, bob))
	must[bool](t, "AddMember")(st.AddMember(ctx, store.UserActor("alice"), room.ID, carol))
	start := head(t, db, st)
	if err := st.Leave(ctx, "alice", room.ID); err != nil {
		t.Fatalf("the owner leaving = %v", err)
	}
	owner := func() string {
		t.Helper()
		return must[store.RoomDetails](t, "RoomDetails")(st.RoomDetails(ctx, "carol", room.ID)).Owner
	}
	if o := owner(); o != "bob" {
		t.Errorf("owner after alice left = %q; want bob, the longest member", o)
	}
	evs := logSince(t, db, st, start)
	if got := types(evs); !slices.Equal(got, []string{"member:left alice", event.RoomUpdated}) {
		t.Fatalf("log of the owner leaving = %q; want her leave, then room:updated", got)
	}
	var upd store.RoomUpdate
	if err := json.Unmarshal(evs[1].Data, &upd); err != nil || upd.Owner != "bob" || upd.By != "alice" {
		t.Errorf("room:updated = %s; want owner bob, by alice", evs[1].Data)
	}
	for _, tt := range []struct {
		name string
		do   func() error
	}{
		{"invite", func() error { _, err := st.Invite(ctx, store.UserActor("alice"), room.ID, "dave"); return err }},
		{"add", func() error {
			_, err := st.AddMember(ctx, store.UserActor("alice"), room.ID, store.User{ID: "dave"})
			return err
		}},
		{"remove", func() error { return st.RemoveMember(ctx, store.UserActor("alice"), room.ID, "carol") }},
		{"rename", func() error {
			_, _, err := st.UpdateRoom(ctx, store.UserActor("alice"), room.ID, store.RoomChange{Name: ptr("mine")})
			return err
		}},
		{"delete", func() error { return st.DeleteRoom(ctx, store.UserActor("alice"), room.ID) }},
	} {
		if err := tt.do(); !errors.Is(err, store.ErrNotOwner) {
			t.Errorf("the owner who left: %s = %v; want ErrNotOwner", tt.name, err)
		}
	}
	if _, err := st.Join(ctx, alice, room.ID); !errors.Is(err, store.ErrPrivateRoom) {
		t.Errorf("the owner who left joining her private room again = %v; want ErrPrivateRoom", err)
	}
	// The backend removing the owner hands the room on too.
	if err := st.RemoveMember(ctx, store.Admin, room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if o := owner(); o != "carol" {
		t.Errorf("owner after the backend removed bob = %q; want carol", o)
	}
	if err := st.Leave(ctx, "carol", room.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RoomDetails(ctx, "carol", room.ID); !errors.Is(err, store.ErrNotMember) {
		t.Errorf("RoomDetails after the last member left = %v; want ErrNotMember: the room stays, private", err)
	}
	pub := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "public", false))
	if err := st.Leave(ctx, "alice", pub.ID); err != nil {
		t.Fatal(err)
	}
	must[bool](t, "Join")(st.Join(ctx, bob, pub.ID))
	if d := must[store.RoomDetails](t, "RoomDetails")(st.RoomDetails(ctx, "bob", pub.ID)); d.Owner != store.System {
		t.Errorf("a public room its last member left, joined again: owner %q; want none", d.Owner)
	}
}

// The owner and the member who would succeed them leave at once, on
// stores that write the database at once: the room ends with an owner who
// is a member.
func testOwnerLeavesRace(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	for i := range 6 {
		room := aliceAndBobIn(t, a, fmt.Sprint("r", i))
		must[bool](t, "Join")(a.Join(ctx, carol, room.ID))
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := a.Leave(ctx, "alice", room.ID); err != nil {
				t.Errorf("Leave(alice) = %v", err)
			}
		})
		wg.Go(func() {
			if err := b.Leave(ctx, "bob", room.ID); err != nil {
				t.Errorf("Leave(bob) = %v", err)
			}
		})
		wg.Wait()
		if d := must[store.RoomDetails](t, "RoomDetails")(a.RoomDetails(ctx, "carol", room.ID)); d.Owner != "carol" {
			t.Fatalf("round %d: owner after alice and bob left at once = %q; want carol, the one member left", i, d.Owner)
		}
	}
}

// The owner changes the room's name and its topic and adds a member, from
// two stores at once, while leaving it: each change either commits before
// the leave or is refused (the owner is bob by then), none undoes
// another's, and the owner stays the member who took over.
func testRoomChangesRaceOwnerLeaving(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	for i := range 6 {
		room := aliceAndBobIn(t, a, fmt.Sprint("r", i))
		name, topic := fmt.Sprint("name", i), fmt.Sprint("topic", i)
		start := head(t, db, a)
		var wg sync.WaitGroup
		var named, topical bool
		change := func(st *store.Store, ch store.RoomChange, ok *bool) {
			_, _, err := st.UpdateRoom(ctx, store.UserActor("alice"), room.ID, ch)
			switch {
			case err == nil:
				*ok = true
			case !errors.Is(err, store.ErrNotOwner):
				t.Errorf("round %d: UpdateRoom racing the owner's leave = %v; want nil or not the owner", i, err)
			}
		}
		wg.Go(func() { change(a, store.RoomChange{Name: &name}, &named) })
		wg.Go(func() { change(b, store.RoomChange{Topic: &topic}, &topical) })
		var added bool
		wg.Go(func() {
			var err error
			added, err = a.AddMember(ctx, store.UserActor("alice"), room.ID, carol)
			if err != nil && !errors.Is(err, store.ErrNotOwner) {
				t.Errorf("round %d: AddMember racing the owner's leave = %v; want nil or not the owner", i, err)
			}
		})
		wg.Go(func() {
			if err := b.Leave(ctx, "alice", room.ID); err != nil {
				t.Errorf("round %d: Leave(alice) = %v", i, err)
			}
		})
		wg.Wait()
		d := must[store.RoomDetails](t, "RoomDetails")(a.RoomDetails(ctx, "bob", room.ID))
		if d.Owner != "bob" {
			t.Fatalf("round %d: owner after alice left = %q; want bob, who took over", i, d.Owner)
		}
		if (d.Name == name) != named || (d.Topic == topic) != topical {
			t.Fatalf("round %d: room named %q, topic %q; the name's change succeeded: %v, the topic's: %v", i, d.Name, d.Topic, named, topical)
		}
		left, joined := false, false
		for _, e := range logSince(t, db, a, start) {
			switch {
			case e.Type == event.MemberLeft && e.Subject == "alice":
				left = true
			case e.Type == event.MemberJoined && e.Subject == "carol":
				if left {
					t.Fatalf("round %d: log: carol added by alice after alice left", i)
				}
				joined = true
			}
		}
		if joined != added {
			t.Fatalf("round %d: log: carol's member:joined %v; want %v, as AddMember said", i, joined, added)
		}
	}
}

// Bob accepts alice's DM invitation twice at once, from two stores: by
// joining it and by opening the DM himself. He joins once, and neither
// transaction deadlocks with the other (which PostgreSQL breaks only
// after a second).
func testDMAcceptRace(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	for i := range 6 {
		bob := store.User{ID: fmt.Sprint("bob", i), Name: "Bob"}
		must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, bob, fmt.Sprint("bob was here", i), false))
		dm, _, err := a.OpenDM(ctx, alice, bob.ID, true)
		if err != nil {
			t.Fatalf("OpenDM(alice, %s, invite) = %v", bob.ID, err)
		}
		start := head(t, db, a)
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := a.Join(ctx, bob, dm.ID); err != nil {
				t.Errorf("round %d: Join = %v", i, err)
			}
		})
		wg.Go(func() {
			if _, _, err := b.OpenDM(ctx, bob, "alice", false); err != nil {
				t.Errorf("round %d: OpenDM(bob, alice) = %v", i, err)
			}
		})
		wg.Wait()
		var joins []string
		for _, e := range logSince(t, db, a, start) {
			if e.Type == event.MemberJoined {
				joins = append(joins, e.Subject)
			}
		}
		if !slices.Equal(joins, []string{bob.ID}) {
			t.Fatalf("round %d: joins in the log = %v; want %s's, once", i, joins, bob.ID)
		}
	}
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("accepting a DM twice at once ran %d transactions again after conflicts; want none", n)
	}
}

// Owners of several rooms invite one user at once, from two stores: the
// user gets no more open invitations than they may have rooms, the rest
// recorded as declined and not told.
func testConcurrentInvitationCap(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{MaxRoomsPerUser: 2})
	var rooms []store.Room
	for i := range 6 {
		rooms = append(rooms, must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, store.User{ID: fmt.Sprint("owner", i)}, "r", true)))
	}
	var wg sync.WaitGroup
	for i, room := range rooms {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			if _, err := st.Invite(ctx, store.UserActor(room.Owner), room.ID, "bob"); err != nil {
				t.Errorf("Invite %d = %v", i, err)
			}
		})
	}
	wg.Wait()
	if open := must[[]store.Invitation](t, "Invitations")(a.Invitations(ctx, "bob")); len(open) != 2 {
		t.Errorf("6 racing invitations of bob, 2 rooms allowed: %d open; want 2", len(open))
	}
}
