package main

// The chat page (herald serve --dev) in real Chromium: two people, each in
// a browser context of their own, chat; every step is asserted from the
// page's DOM. In a cluster, each person's page is served by another
// instance.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// chat is a person's tab on the chat page.
type chat struct{ *tab }

// openChat opens the chat page at base (with the room of an invite link
// when room is not empty) and signs in as name.
func openChat(p *tab, base, room, name string) chat {
	p.t.Helper()
	url := base + "/"
	if room != "" {
		url += "#room=" + room
	}
	p.run("sign in as "+name,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("name")),
		typeInto(chromedp.ID("name"), name),
		chromedp.Click(chromedp.CSS("#signin-form button")),
	)
	c := chat{p}
	c.waitJS("the connection to go live", `document.querySelector("#conn").dataset.state === "live"`)
	return c
}

// createRoom creates a room named name from the page, waits until the
// page opens it, and returns its id.
func (c chat) createRoom(name string) string {
	c.t.Helper()
	var before string
	c.eval(`location.hash`, &before)
	c.run("create room "+name,
		typeInto(chromedp.ID("new-room-name"), name),
		chromedp.Click(chromedp.CSS("#new-room button")),
	)
	c.waitJS("room "+name+" to open", fmt.Sprintf(`document.querySelector("#room-name").textContent === %s && location.hash.startsWith("#room=") && location.hash !== %s`,
		jsString(name), jsString(before)))
	var room string
	c.eval(`decodeURIComponent(location.hash.slice("#room=".length))`, &room)
	return room
}

// texts is a JS expression: the texts of the messages shown, oldest first.
const texts = `[...document.querySelectorAll("#message-list li.msg:not(.pending) .text")].map((e) => e.textContent)`

// waitTexts waits until the page shows exactly want, in order.
func (c chat) waitTexts(what string, want ...string) {
	c.t.Helper()
	c.waitJS(what, fmt.Sprintf(`JSON.stringify(%s) === %s`, texts, jsString(jsonOf(want))))
}

func jsonOf(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = jsString(s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// unread is a JS expression: the unread count shown for the room named.
func unread(name string) string {
	return fmt.Sprintf(`(() => {
		for (const li of document.querySelectorAll("#rooms li")) {
			if (li.querySelector(".name").textContent.endsWith(" " + %s)) {
				const u = li.querySelector(".unread");
				return u.hidden ? 0 : Number(u.dataset.count);
			}
		}
		return -1;
	})()`, jsString(name))
}

func TestBrowserChat(t *testing.T) {
	env := map[string]string{
		"HERALD_DEV":            "on",
		"HERALD_PRESENCE_GRACE": "0s",
	}
	t.Run("embedded", func(t *testing.T) {
		s := startServer(t, env)
		testChat(t, s.URL, s.URL, s)
	})
	t.Run("cluster", func(t *testing.T) {
		c := startCluster(t, 2, false, false, env)
		// Alice's page is served by one instance, Bob's by the other.
		testChat(t, c.nodes[0].URL, c.nodes[1].URL, c.nodes[0].testServer)
	})
}

func testChat(t *testing.T, aliceURL, bobURL string, s *testServer) {
	alice := openChat(person(t, "alice"), aliceURL, "", "Alice")

	// Alice creates a room; the page opens it.
	room := alice.createRoom("general")

	// History to page back through: 55 messages from carol.
	carol := s.token("carol")
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", carol, nil, nil)
	var history []string
	for i := range 55 {
		text := fmt.Sprintf("old %02d", i)
		s.post(carol, room, text)
		history = append(history, text)
	}
	alice.waitTexts("carol's messages as they come", history...)

	// Bob opens Alice's invite link at phone width: he joins and sees the
	// room, and Alice sees him come online.
	bobTab := person(t, "bob")
	bobTab.run("phone width", chromedp.EmulateViewport(390, 844))
	bob := openChat(bobTab, bobURL, room, "Bob")
	bob.waitJS("the room from the link", `document.querySelector("#room-name").textContent === "general"`)
	bob.waitTexts("the room's newest page", history[5:]...)
	// Clicked from the page: the list may still scroll to its bottom as
	// members and receipts arrive, which can move the button from under
	// a pointer's click.
	bob.waitJS("the older button", `!document.querySelector("#older").hidden`)
	bob.eval(`document.querySelector("#older").click()`, nil)
	bob.waitTexts("all of history", history...)
	bob.waitJS("no more history", `document.querySelector("#older").hidden`)
	bob.waitJS("a phone layout: the room without the rooms list, nothing wider than the screen",
		`document.querySelector("#app").dataset.view === "room" && getComputedStyle(document.querySelector("#rooms-pane")).display === "none" &&
		 document.documentElement.scrollWidth <= innerWidth && document.querySelector("#composer").getBoundingClientRect().bottom <= innerHeight`)
	alice.waitJS("Bob online in the members", `document.querySelector('#members li[data-user="bob"]')?.dataset.status === "online"`)
	bob.waitJS("Alice online in the members", `document.querySelector('#members li[data-user="alice"]')?.dataset.status === "online"`)

	// Bob types: Alice sees it; he sends: the message appears, once, and
	// the typing line clears.
	bob.run("type", typeInto(chromedp.ID("text"), "hello ali"))
	alice.waitJS("Bob typing", `document.querySelector("#typing").textContent === "Bob is typing…"`)
	bob.run("finish and send", typeInto(chromedp.ID("text"), "ce\n"))
	alice.waitTexts("Bob's message", append(append([]string{}, history...), "hello alice")...)
	alice.waitJS("the typing line to clear", `document.querySelector("#typing").textContent === ""`)
	bob.waitTexts("his own message, once", append(append([]string{}, history...), "hello alice")...)

	// Alice has the room open: she has read it, and Bob sees so under his
	// message.
	bob.waitJS("Seen by Alice under his message", `(() => {
		const li = [...document.querySelectorAll("#message-list li.msg")].at(-1);
		return li.querySelector(".text").textContent === "hello alice" && li.querySelector(".seen").textContent === "Seen by Alice";
	})()`)

	// Alice moves to another room; Bob's next messages count as unread
	// there until she comes back.
	random := alice.createRoom("random")
	bob.run("send two", typeInto(chromedp.ID("text"), "are you there?\n"))
	bob.waitTexts("the first", append(append([]string{}, history...), "hello alice", "are you there?")...)
	bob.run("send two", typeInto(chromedp.ID("text"), "hello?\n"))
	alice.waitJS("2 unread in general", unread("general")+` === 2`)
	alice.waitJS("nothing unread in random", unread("random")+` === 0`)
	bob.waitJS("the last read still under hello alice", `[...document.querySelectorAll("#message-list .seen")].filter((e) => !e.hidden).map((e) => e.closest("li").querySelector(".text").textContent).join() === "hello alice"`)
	alice.run("back to general", chromedp.Click(chromedp.CSS(`#rooms li[data-room="`+room+`"] button`)))
	alice.waitTexts("general again", append(append([]string{}, history...), "hello alice", "are you there?", "hello?")...)
	alice.waitJS("nothing unread in general", unread("general")+` === 0`)
	bob.waitJS("Seen by Alice under the last one", `(() => {
		const li = [...document.querySelectorAll("#message-list li.msg")].at(-1);
		return li.querySelector(".text").textContent === "hello?" && li.querySelector(".seen").textContent === "Seen by Alice";
	})()`)

	// Bob edits his last message and deletes the one before: Alice sees
	// the new text, marked edited, and a tombstone.
	lastMsg := `[...document.querySelectorAll("#message-list li.msg")].at(-1)`
	bob.run("edit", chromedp.Click(chromedp.CSS(`#message-list li.msg:last-child button.edit`)))
	bob.waitJS("the composer holding the text", `document.querySelector("#text").value === "hello?" && document.querySelector("#send").textContent === "Save"`)
	bob.run("change and save", typeInto(chromedp.ID("text"), " anyone?\n"))
	// (The Enter that typeInto types reaches the textarea as a character
	// too, which a real keyboard's does not.)
	bob.waitJS("the composer back", `document.querySelector("#text").value.trim() === "" && document.querySelector("#send").textContent === "Send"`)
	bob.run("delete", chromedp.Click(chromedp.CSS(`#message-list li.msg:nth-last-child(2) button.delete`)))
	want := append(append([]string{}, history...), "hello alice", "(deleted)", "hello? anyone?")
	alice.waitTexts("the edit and the deletion", want...)
	alice.waitJS("marked edited", lastMsg+`.querySelector(".time").textContent.endsWith("(edited)")`)
	alice.waitJS("no actions on Bob's messages", lastMsg+`.querySelector(".actions") === null`)
	bob.waitTexts("his own edit and deletion", want...)
	bob.waitJS("no actions on a tombstone", `document.querySelector("#message-list li.msg:nth-last-child(2) .actions") === null`)

	// Alice leaves random: it is gone from her list.
	alice.run("open random", chromedp.Click(chromedp.CSS(`#rooms li[data-room="`+random+`"] button`)))
	alice.waitJS("random open", `document.querySelector("#room-name").textContent === "random"`)
	alice.run("leave", chromedp.Click(chromedp.ID("leave")))
	alice.waitJS("random gone", `[...document.querySelectorAll("#rooms .name")].map((e) => e.textContent).join() === "# general"`)

	// Bob closes his browser: Alice sees him go offline.
	alice.run("back to general", chromedp.Click(chromedp.CSS(`#rooms li[data-room="`+room+`"] button`)))
	bobTab.close()
	alice.waitJS("Bob offline", `document.querySelector('#members li[data-user="bob"]')?.dataset.status === "offline"`)
	alice.waitJS("the connection still live", `document.querySelector("#conn").dataset.state === "live"`)
}

// TestBrowserChatBigRoom: in a room over the presence limit the page shows
// the room's online count, and its members' dots say nothing rather than
// "offline"; back at the limit, the dots come back.
func TestBrowserChatBigRoom(t *testing.T) {
	s := startServer(t, map[string]string{
		"HERALD_DEV": "on", "HERALD_PRESENCE_ROOM_LIMIT": "2", "HERALD_PRESENCE_COUNT_INTERVAL": "30ms",
		"HERALD_PRESENCE_BATCH": "20ms", "HERALD_PRESENCE_GRACE": "0s",
	})
	alice := openChat(person(t, "alice"), s.URL, "", "Alice")
	room := alice.createRoom("town hall")
	bob, carol := s.token("bob"), s.token("carol")
	joinRoom(t, s, bob, room)
	joinRoom(t, s, carol, room)
	b := s.stream(bob, "")
	defer b.Close()

	alice.waitJS("the room's online count", `(() => {
		const c = document.querySelector("#online-count");
		return !c.hidden && c.textContent === "2 online";
	})()`)
	alice.waitJS("bob's dot saying nothing", `document.querySelector('#members li[data-user="bob"]')?.dataset.status === "unknown"`)

	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/leave", carol, nil, nil)
	alice.waitJS("the count gone", `document.querySelector("#online-count").hidden`)
	alice.waitJS("bob's presence back", `document.querySelector('#members li[data-user="bob"]')?.dataset.status === "online"`)
}

// TestBrowserChatPresenceStale: while Redis is down, a typist's stop
// cannot reach the other instances; once Redis is back (empty here, so no
// timeout ends the typing either), the page that showed the typist is
// told its ephemeral events may have been lost, and clears the typing line.
func TestBrowserChatPresenceStale(t *testing.T) {
	c := startCluster(t, 2, true, false, map[string]string{
		"HERALD_DEV": "on", "HERALD_PRESENCE_GRACE": "0s", "HERALD_TYPING_TIMEOUT": "1h",
	})
	n0, n1 := c.nodes[0], c.nodes[1]
	alice := openChat(person(t, "alice"), n0.URL, "", "Alice")
	room := alice.createRoom("general")
	n1.join("bob", room)
	setTyping(t, n1.testServer, n1.tok("bob"), room, true)
	alice.waitJS("bob typing", `document.querySelector("#typing").textContent !== ""`)

	c.redis.Kill()
	if err := c.redis.Start(); err != nil {
		t.Fatal(err)
	}
	alice.waitJS("the typing line to clear", `document.querySelector("#typing").textContent === ""`)
}
