// React bindings of Herald's browser client: a thin layer over herald.js.
// The hooks hold no state of their own; they render the client's snapshot
// (useSyncExternalStore) and call its methods.
//
//   const herald = useHerald({ token });      // or useHerald(client)
//   const room = useRoom(herald, roomId);     // messages, typing, receipts...

import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { Herald } from "./herald.js";

export { Herald, HeraldError, EVENT_TYPES, STATES } from "./herald.js";

const EMPTY = Object.freeze([]);
const IDLE = Object.freeze({
  state: "closed", lastEventAt: null, lastEventId: "", user: "",
  rooms: EMPTY, messages: {}, hasMore: {}, pending: {}, typing: {},
  members: {}, presence: {}, online: {}, receipts: {},
});
const idle = () => IDLE;
const noSubscribe = () => () => {};

function useSnapshot(client) {
  return useSyncExternalStore(client ? client.subscribe : noSubscribe, client ? client.getSnapshot : idle, idle);
}

/**
 * Connects to Herald for as long as the component is mounted, and renders
 * the client's state: {client, state, lastEventAt, user, rooms, messages,
 * hasMore, pending, typing, members, presence, online, receipts}.
 *
 * Given options ({url, token, ...} as for new Herald), the hook makes the
 * client, connects it and closes it on unmount or when url changes; token
 * may change between renders, the client asks for the newest. Given a
 * Herald, it only renders it: whoever made it connects and closes it.
 */
export function useHerald(options) {
  const external = options instanceof Herald ? options : null;
  const latest = useRef(options);
  latest.current = options;
  const [own, setOwn] = useState(null);
  const url = external ? null : (options?.url ?? "");

  useEffect(() => {
    if (external) return undefined;
    const token = (o) => {
      const t = latest.current?.token;
      return typeof t === "function" ? t(o) : t;
    };
    const c = new Herald({ ...latest.current, url, token });
    c.connect();
    setOwn(c);
    return () => {
      c.close();
      setOwn(null);
    };
  }, [external, url]);

  const client = external ?? own;
  const snap = useSnapshot(client);
  return useMemo(() => ({ client, ...snap }), [client, snap]);
}

/**
 * One room, for a component that shows it: loads its newest messages,
 * members and receipts once (client.openRoom), then renders them as the
 * stream keeps them current. herald is what useHerald returned, or a
 * Herald.
 */
export function useRoom(herald, room) {
  const client = herald instanceof Herald ? herald : (herald?.client ?? null);
  const snap = useSnapshot(client);
  const [error, setError] = useState(null);

  useEffect(() => {
    if (!client || !room) return undefined;
    let live = true;
    setError(null);
    client.openRoom(room).catch((err) => live && setError(err));
    return () => { live = false; };
  }, [client, room]);

  return useMemo(() => {
    const info = snap.rooms.find((r) => r.id === room) ?? null;
    const messages = snap.messages[room] ?? EMPTY;
    const members = (snap.members[room] ?? EMPTY).map((m) => ({
      ...m, ...(snap.presence[m.user] ?? { status: "offline", last_seen: null }),
    }));
    return {
      room: info,
      loaded: room in snap.messages,
      messages,
      hasMore: snap.hasMore[room] ?? true,
      pending: snap.pending[room] ?? EMPTY,
      typing: snap.typing[room] ?? EMPTY,
      members,
      online: snap.online[room] ?? null,
      receipts: snap.receipts[room] ?? {},
      unread: info?.unread ?? 0,
      error,
      loadOlder: () => client.loadOlder(room),
      send: (text, o) => client.send(room, text, o),
      setTyping: (on = true) => client.typing(room, on),
      markRead: (id = messages.at(-1)?.id) => (id ? client.markRead(room, id) : Promise.resolve(null)),
      leave: () => client.leave(room),
    };
  }, [client, room, snap, error]);
}
