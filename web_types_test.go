package main

// The client's hand-written TypeScript declarations, checked by the
// TypeScript compiler (from the npm registry, into a temporary folder)
// against code that uses the package as an app would: web/ installed as
// herald-client, its exports resolved from package.json.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const typesUsage = `import { Herald, HeraldError, EVENT_TYPES, STATES, type ConnectionState, type Message, type Snapshot } from "herald-client";
import { useHerald, useRoom } from "herald-client/react";

const herald = new Herald({ url: "https://chat.example.com", token: async ({ refresh }) => (refresh ? "new" : "old"), backoff: { min: 100 } });
herald.connect();
const off: () => void = herald.on("message:created", (m) => {
  const id: number = m.id;
  const text: string = m.deleted_at ? "(deleted)" : m.text ?? "";
  console.log(id, text, m.created_at.length);
});
off();
herald.on("state", ({ state, previous }) => {
  const s: ConnectionState = state;
  console.log(s, previous);
});
herald.on("typing:started", (d) => d.user.toUpperCase());
herald.on("presence:changed", (p) => (p.last_seen ?? "").length + p.status.length);
herald.on("room:online", (o) => o.room.length + o.online + (o.presence ? 1 : 0));
const counted: number = herald.getSnapshot().online["r"]?.online ?? 0;
herald.on("error", (e) => e.code);
herald.on("room:updated", (r) => r.topic.length + (r.owner ?? "").length);
herald.on("custom", (c) => console.log(c.event, c.data, c.room));
herald.addEventListener("receipt:updated", (e) => e.detail.message_id.toFixed());
const types: readonly string[] = EVENT_TYPES;
const states: readonly ConnectionState[] = STATES;
const snap: Snapshot = herald.getSnapshot();
const unread: number | undefined = snap.rooms[0]?.unread;
const state: ConnectionState = herald.state;
console.log(types, states, unread, state, herald.lastEventAt, herald.unread("r"), herald.typists("r").map((t) => t.name));

async function actions(): Promise<void> {
  const room = await herald.createRoom("general", { private: true });
  const msg: Message = await herald.send(room.id, "hi", { clientId: "c-1" });
  const page = await herald.history(room.id, { before: msg.id, limit: 10 });
  const more: boolean = page.has_more || (await herald.loadOlder(room.id));
  await herald.openRoom(room.id);
  await herald.typing(room.id);
  await herald.markRead(room.id, msg.id);
  const members = await herald.members(room.id);
  console.log(more, members[0].status, members[0].owner, (await herald.receipts(room.id))[0].message_id);
  const edited: Message = await herald.editMessage(room.id, msg.id, "hi!");
  const gone: Message = await herald.deleteMessage(room.id, edited.id);
  const details = await herald.room(room.id);
  await herald.updateRoom(room.id, { topic: "plans" });
  const dm = await herald.dm("bob");
  const invitations = await herald.invitations();
  if (invitations.length > 0 && invitations[0].kind === "room") await herald.declineInvitation(invitations[0].room);
  const invited: boolean | undefined = (await herald.addMember(room.id, "carol")).invited;
  herald.on("invitation:deleted", (d) => console.log(d.room, d.reason === "declined", invited));
  console.log(gone.deleted_at, details.member_count, details.kind === "dm", dm.peer?.name);
  await herald.deleteRoom(room.id);
  try {
    await herald.join("r");
  } catch (err) {
    if (err instanceof HeraldError) console.log(err.status, err.code, err.retryAfter);
  }
  herald.close();
}
void actions;

// @ts-expect-error a room id is a string
herald.send(1, "hi");
// @ts-expect-error the token is required
new Herald({});

export function Chat({ token, roomId }: { token: string; roomId: string }) {
  const h = useHerald({ token });
  const room = useRoom(h, roomId);
  const state: ConnectionState = h.state;
  return (
    <section>
      <p>{state} {room.unread} {room.hasMore ? "more" : ""} {room.typing.map((t) => t.name).join(", ")}</p>
      <ul>{room.messages.map((m) => <li key={m.id}>{m.name}: {m.text}</li>)}</ul>
      <button onClick={() => room.loadOlder()}>Older</button>
      <input onChange={() => room.setTyping()} onBlur={() => room.setTyping(false)} />
      <button onClick={() => room.send("hi").then((m) => m.id)}>Send</button>
      {room.members.map((m) => <span key={m.user}>{m.user} {m.status}</span>)}
    </section>
  );
}
`

const typesConfig = `{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "lib": ["es2022", "dom"],
    "module": "esnext",
    "moduleResolution": "bundler",
    "jsx": "react-jsx",
    "types": []
  },
  "files": ["usage.tsx"]
}
`

func TestClientTypes(t *testing.T) {
	webDir, err := filepath.Abs("web")
	if err != nil {
		t.Fatal(err)
	}
	modules := npmInstall(t, "typescript", "@types/react", webDir)
	dir := filepath.Dir(modules)
	for name, content := range map[string]string{"usage.tsx": typesUsage, "tsconfig.json": typesConfig} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the TypeScript compiler (Debian: apt-get install npm): %v", err)
	}
	cmd := exec.Command(node, filepath.Join(modules, "typescript", "bin", "tsc"), "-p", dir)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc on code that uses herald-client: %v\n%s", err, out)
	}
}
