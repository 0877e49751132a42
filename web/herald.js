// Herald's browser client: one ES module, no dependencies, no build step.
//
//   import { Herald } from "/client.js";
//   const herald = new Herald({ token: () => fetchMyToken() });
//   herald.on("message:created", (msg) => console.log(msg.text));
//   herald.connect();
//   await herald.send(room, "hello");
//
// What it does for a page:
//   - The stream. It trades the token for a ticket, opens an EventSource,
//     and lets the browser reconnect by itself (same URL, Last-Event-ID,
//     the stream cookie). When the browser gives up for good (readyState
//     CLOSED: a proxy's 502 while Herald restarts, a 401 once the cookie or
//     token expired), it opens a new one itself, with backoff and jitter, a
//     fresh ticket (asking the app for a fresh token when the old one is
//     refused) and the last event id, so nothing is missed.
//   - Actions. Each is a fetch that resolves with the server's answer or
//     rejects with a HeraldError {status, code, message}. Those that are
//     safe to repeat are retried on network errors, 429 and 502-504; a
//     message keeps its client_id across retries, so it is stored once.
//   - State. Rooms with unread counts, messages per room (deduplicated by
//     id, paged back through history), typing, presence, read receipts and
//     the connection's state, kept up to date from the stream, as one
//     immutable snapshot (getSnapshot, subscribe) that any framework can
//     render. After a resync it refetches history and receipts over REST,
//     so what it shows has no gap and no duplicate.
//
// Events go through EventTarget: each stream event by its type, with the
// payload as detail (on() passes it straight), plus "state" (the
// connection), "change" (the snapshot) and "error" (a failure the client
// works around by itself, for the app to log or show). close() stops every
// timer, listener, stream and request the client started.

/** Stream events Herald sends; see openapi.yaml x-sse-events. */
export const EVENT_TYPES = Object.freeze([
  "ready", "resync",
  "message:created", "message:updated", "message:deleted",
  "member:joined", "member:left",
  "room:updated", "room:deleted",
  "receipt:updated",
  "typing:started", "typing:stopped",
  "presence:changed", "room:online", "presence:stale",
  "custom",
  "invitation:created", "invitation:deleted",
]);

/** Connection states, in the order a client usually goes through them. */
export const STATES = Object.freeze(["connecting", "live", "reconnecting", "offline", "closed"]);

// Events of the client itself, never of the stream.
const OWN_EVENTS = new Set(["state", "change", "error"]);

/** An action that failed: the server's error, or a network failure (status 0). */
export class HeraldError extends Error {
  constructor(status, code, message, retryAfter = 0) {
    super(message);
    this.name = "HeraldError";
    /** HTTP status; 0 when no answer came. */
    this.status = status;
    /** The server's stable code, or network, closed, token, bad_answer. */
    this.code = code;
    /** Seconds, from a Retry-After header. */
    this.retryAfter = retryAfter;
  }
}

const DEFAULTS = {
  url: "",
  typingInterval: 3000,
  typingIdle: 4000,
  retries: 3,
  backoff: { min: 500, max: 30000 },
  pageSize: 50,
};

// Statuses worth another try of a safe action.
const RETRYABLE = new Set([429, 502, 503, 504]);

const EMPTY = Object.freeze([]);

export class Herald extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.url] Herald's base URL; "" (default) for this origin.
   * @param {string | ((o: {refresh: boolean}) => string | Promise<string>)} options.token
   *   The user's JWT, or a function that returns one; it is called again,
   *   with refresh true, when the server refuses the one it has.
   */
  constructor(options = {}) {
    super();
    const o = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...options.backoff } };
    if (o.token == null) throw new TypeError("Herald: options.token is required");
    this._o = o;
    this._base = String(o.url).replace(/\/+$/, "");
    this._fetch = o.fetch ?? ((...a) => globalThis.fetch(...a));
    this._ES = o.EventSource ?? globalThis.EventSource;
    const here = globalThis.location?.href;
    this._cross = o.withCredentials ?? (here ? new URL(this._base || here, here).origin !== new URL(here).origin : false);
    this._types = new Set(EVENT_TYPES);

    this._state = "closed";
    this._es = null;
    this._lastEventId = "";
    this._everLive = false;
    this._failures = 0; // fatal closes and failed opens since the last ready
    this._openGen = 0; // makes a stale ticket request drop its answer
    this._retryTimer = 0;
    this._abort = new AbortController();
    this._listening = false;

    this._tokenP = null;
    this._tokenGen = 0;

    this._typing = new Map(); // room → {active, sentAt, idle}
    this._reads = new Map(); // room → {inFlight, want}
    this._opened = new Map(); // room → promise of openRoom
    this._msgIds = new Map(); // room → Set of message ids in the snapshot
    this._loading = new Map(); // room → messages that came while a page of it was on its way
    this._presenceSeq = 0; // counts presence:changed events
    this._presenceAt = new Map(); // user → the count at their last event
    this._memberChanges = new Map(); // room → {fetching, changes}: joins and leaves heard while its members load
    this._roomsFetches = new Set(); // for each rooms() answer on its way, the room patches heard meanwhile
    this._roomsTimer = 0;
    this._notifyQueued = false;

    this._snap = Object.freeze({
      state: "closed", lastEventAt: null, lastEventId: "", user: "",
      rooms: EMPTY, messages: {}, hasMore: {}, pending: {}, typing: {},
      members: {}, presence: {}, online: {}, receipts: {},
    });

    // Bound once, so that they can be passed around (React's
    // useSyncExternalStore keeps subscribe by identity).
    this.subscribe = this.subscribe.bind(this);
    this.getSnapshot = this.getSnapshot.bind(this);
    this._onSSE = this._onSSE.bind(this);
    this._onESError = this._onESError.bind(this);
    this._onOnline = this._onOnline.bind(this);
    this._onOffline = this._onOffline.bind(this);
  }

  // ---- connection ----

  /** The connection's state: connecting, live, reconnecting, offline or closed. */
  get state() { return this._state; }
  /** When the last stream event arrived (ms since the epoch), or null. */
  get lastEventAt() { return this._snap.lastEventAt; }
  /** The id of the last event received: where a new stream resumes. */
  get lastEventId() { return this._lastEventId; }
  /** The user the stream belongs to, once it is live. */
  get user() { return this._snap.user; }

  /** Opens the stream; it stays open, reconnecting as needed, until close(). */
  connect() {
    if (this._state !== "closed") return this;
    if (this._abort.signal.aborted) this._abort = new AbortController();
    if (!this._listening && globalThis.addEventListener) {
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
      this._listening = true;
    }
    this._failures = 0;
    if (this._isOffline()) {
      this._setState("offline");
    } else {
      this._setState(this._everLive ? "reconnecting" : "connecting");
      this._open();
    }
    return this;
  }

  /** Closes the stream and stops every timer, listener and request. */
  close() {
    if (this._state === "closed" && !this._listening) return;
    this._openGen++;
    this._dropStream();
    clearTimeout(this._retryTimer);
    clearTimeout(this._roomsTimer);
    this._retryTimer = this._roomsTimer = 0;
    for (const t of this._typing.values()) clearTimeout(t.idle);
    this._typing.clear();
    this._reads.clear();
    this._opened.clear();
    this._loading.clear();
    if (this._listening) {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
      this._listening = false;
    }
    this._abort.abort();
    this._setState("closed");
  }

  _isOffline() { return globalThis.navigator?.onLine === false; }

  _onOffline() {
    if (this._state === "closed") return;
    this._openGen++;
    this._dropStream();
    clearTimeout(this._retryTimer);
    this._retryTimer = 0;
    this._setState("offline");
  }

  _onOnline() {
    if (this._state !== "offline") return;
    this._failures = 0;
    this._setState(this._everLive ? "reconnecting" : "connecting");
    this._open();
  }

  _setState(state) {
    const previous = this._state;
    if (state === previous) return;
    this._state = state;
    if (state === "live") this._everLive = true;
    this._update({ state });
    this.dispatchEvent(new CustomEvent("state", { detail: { state, previous } }));
  }

  // Asks for a ticket and opens a stream with it, resuming after the last
  // event received; on failure, tries again later.
  async _open() {
    const gen = ++this._openGen;
    try {
      const t = await this._request("POST", "/v1/stream/tickets", { retry: false });
      if (gen !== this._openGen) return;
      let url = `${this._base}/v1/stream?ticket=${encodeURIComponent(t.ticket)}`;
      if (this._lastEventId) url += `&last_event_id=${encodeURIComponent(this._lastEventId)}`;
      const es = new this._ES(url, { withCredentials: this._cross });
      this._es = es;
      for (const type of this._types) es.addEventListener(type, this._onSSE);
      es.addEventListener("error", this._onESError);
    } catch (err) {
      if (gen !== this._openGen) return;
      this._emitError(err);
      this._retryLater();
    }
  }

  _dropStream() {
    const es = this._es;
    if (!es) return;
    this._es = null;
    for (const type of this._types) es.removeEventListener(type, this._onSSE);
    es.removeEventListener("error", this._onESError);
    es.close();
  }

  _retryLater() {
    if (this._state === "closed" || this._state === "offline") return;
    if (this._isOffline()) {
      this._setState("offline");
      return;
    }
    const delay = this._backoff(this._failures++);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = 0;
      this._open();
    }, delay);
  }

  // Exponential backoff with jitter: between half and all of min·2^n,
  // capped at max, so that the pages a restart dropped do not all come
  // back at the same moment.
  _backoff(n) {
    const { min, max } = this._o.backoff;
    const cap = Math.min(max, min * 2 ** Math.min(n, 20));
    return cap / 2 + Math.random() * (cap / 2);
  }

  _onESError(e) {
    const es = e.target;
    if (es !== this._es) return;
    if (es.readyState === 2) {
      // The browser gave up: a non-200 answer (a proxy's 502, a 401) or
      // a body that is not an event stream. From here it is ours to redo.
      this._dropStream();
      this._setState(this._everLive ? "reconnecting" : "connecting");
      this._retryLater();
      return;
    }
    // The browser reconnects by itself, with Last-Event-ID.
    this._setState(this._everLive ? "reconnecting" : "connecting");
  }

  _onSSE(e) {
    if (e.target !== this._es) return;
    let data = null;
    if (e.data) {
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
    }
    if (e.lastEventId) this._lastEventId = e.lastEventId;
    this._update({ lastEventAt: Date.now(), lastEventId: this._lastEventId });
    this._apply(e.type, data);
    this.dispatchEvent(new CustomEvent(e.type, { detail: data }));
  }

  _emitError(err) {
    if (err?.code === "closed") return;
    this.dispatchEvent(new CustomEvent("error", { detail: err }));
  }

  // ---- events ----

  /**
   * Calls fn with the payload of each event of type (a stream event type,
   * or state, change, error) until the function returned is called.
   */
  on(type, fn) {
    const h = (e) => fn(e.detail, e);
    this.addEventListener(type, h);
    if (!OWN_EVENTS.has(type) && !this._types.has(type)) {
      // A type this version does not know yet: listen for it too.
      this._types.add(type);
      this._es?.addEventListener(type, this._onSSE);
    }
    return () => this.removeEventListener(type, h);
  }

  /** Calls fn whenever the snapshot changes; returns the unsubscribe function. */
  subscribe(fn) {
    this.addEventListener("change", fn);
    return () => this.removeEventListener("change", fn);
  }

  /** The current state, immutable: a new object after each change. */
  getSnapshot() { return this._snap; }

  // ---- requests ----

  _token() {
    const src = this._o.token;
    if (typeof src !== "function") return Promise.resolve(src);
    if (!this._tokenP) this._tokenP = this._callToken(false);
    return this._tokenP;
  }

  _refreshToken(gen) {
    if (typeof this._o.token !== "function") return false;
    if (gen === this._tokenGen) {
      this._tokenGen++;
      this._tokenP = this._callToken(true);
    }
    return true;
  }

  _callToken(refresh) {
    const p = Promise.resolve()
      .then(() => this._o.token({ refresh }))
      .then((t) => {
        if (!t) throw new HeraldError(0, "token", "the token function returned no token");
        return String(t);
      })
      .catch((err) => {
        if (this._tokenP === p) this._tokenP = null; // ask again next time
        throw err instanceof HeraldError ? err : new HeraldError(0, "token", `the token function failed: ${err?.message ?? err}`);
      });
    return p;
  }

  /**
   * Sends one request. With retry, network errors, 429 (after its
   * Retry-After) and 502-504 are tried again with backoff; a 401 asks the
   * token function for a fresh token once, whatever retry says.
   */
  async _request(method, path, { body, query, retry = false } = {}) {
    let url = this._base + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) {
        for (const x of [].concat(v)) if (x !== undefined && x !== null && x !== "") q.append(k, String(x));
      }
      if (q.size) url += "?" + q;
    }
    const signal = this._abort.signal;
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const gen = this._tokenGen;
      const token = await this._token();
      if (signal.aborted) throw new HeraldError(0, "closed", "the client was closed");
      const headers = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let res;
      try {
        res = await this._fetch(url, {
          method, headers, signal,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        if (signal.aborted) throw new HeraldError(0, "closed", "the client was closed");
        const e = new HeraldError(0, "network", `${method} ${path}: ${err?.message ?? "network error"}`);
        if (retry && attempt < this._o.retries) {
          await this._sleep(this._backoff(attempt));
          continue;
        }
        throw e;
      }
      if (res.ok) {
        if (res.status === 204) return null;
        const text = await res.text();
        try {
          const v = text ? JSON.parse(text) : null;
          if (v && typeof v === "object") Object.defineProperty(v, "status", { value: res.status, enumerable: false });
          return v;
        } catch {
          throw new HeraldError(res.status, "bad_answer", `${method} ${path}: the answer is not JSON`);
        }
      }
      const err = await toError(res);
      if (res.status === 401 && !refreshed && this._refreshToken(gen)) {
        refreshed = true;
        attempt--;
        continue;
      }
      if (retry && RETRYABLE.has(res.status) && attempt < this._o.retries) {
        await this._sleep(Math.max(this._backoff(attempt), err.retryAfter * 1000));
        continue;
      }
      throw err;
    }
  }

  _sleep(ms) {
    const signal = this._abort.signal;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new HeraldError(0, "closed", "the client was closed"));
      const t = setTimeout(() => {
        signal.removeEventListener("abort", stop);
        resolve();
      }, ms);
      const stop = () => {
        clearTimeout(t);
        reject(new HeraldError(0, "closed", "the client was closed"));
      };
      signal.addEventListener("abort", stop, { once: true });
    });
  }

  // ---- actions ----

  /** Creates a room; you own it. Not retried: a repeat would create another. */
  async createRoom(name, { private: priv = false } = {}) {
    const room = await this._request("POST", "/v1/rooms", { body: { name, private: priv } });
    this._scheduleRooms();
    return room;
  }

  /** Your rooms, with unread counts; also refreshes the snapshot's. */
  async rooms() {
    // The answer may predate events heard while it is on its way: their
    // patches are applied again over it (each gives the same room whether
    // or not the answer had its change).
    const heard = [];
    this._roomsFetches.add(heard);
    let rooms;
    try {
      ({ rooms } = await this._request("GET", "/v1/rooms", { retry: true }));
    } finally {
      this._roomsFetches.delete(heard);
    }
    this._update({ rooms: Object.freeze(rooms.map((r) => Object.freeze({ ...r }))) });
    for (const [room, fn] of heard) this._patchRoom(room, fn);
    return rooms;
  }

  /** A room: its settings, member count, and your unread count and read position. */
  room(room) {
    return this._request("GET", `/v1/rooms/${enc(room)}`, { retry: true });
  }

  /**
   * The owner changes a room: {name?, topic?, owner?} (owner hands it to
   * another member). Every member's snapshot follows by room:updated.
   */
  updateRoom(room, changes) {
    return this._request("PATCH", `/v1/rooms/${enc(room)}`, { body: changes, retry: true });
  }

  /**
   * The owner closes a room: every member gets room:deleted, and its
   * messages are gone. Not retried: a repeat would answer room_not_found.
   */
  async deleteRoom(room) {
    await this._request("DELETE", `/v1/rooms/${enc(room)}`);
    this._forgetRoom(room);
    return null;
  }

  /** The one direct conversation with user, opened the first time it is asked for. */
  async dm(user) {
    const room = await this._request("POST", "/v1/dms", { body: { user }, retry: true });
    this._scheduleRooms();
    return room;
  }

  /** Joins a public room (or one you were added to). */
  async join(room) {
    const res = await this._request("POST", `/v1/rooms/${enc(room)}/join`, { retry: true });
    this._scheduleRooms();
    return res;
  }

  /** Leaves a room. */
  async leave(room) {
    await this._request("POST", `/v1/rooms/${enc(room)}/leave`, { retry: true });
    this._forgetRoom(room);
    return null;
  }

  /** A room's members with their presence; also refreshes the snapshot's. */
  async members(room) {
    const asked = this._presenceSeq;
    // A join or leave heard while the answer is on its way may or may not
    // be in it: replayed in order over the answer, each gives the same list
    // either way.
    const heard = this._memberChanges.get(room) ?? { fetching: 0, changes: [] };
    this._memberChanges.set(room, heard);
    heard.fetching++;
    const from = heard.changes.length;
    let members;
    try {
      ({ members } = await this._request("GET", `/v1/rooms/${enc(room)}/members`, { retry: true }));
    } finally {
      if (--heard.fetching === 0 && this._memberChanges.get(room) === heard) this._memberChanges.delete(room);
    }
    let list = members.map((m) => Object.freeze({ user: m.user, name: m.name ?? "", owner: m.owner, joined_at: m.joined_at }));
    const added = [];
    for (const { user, member } of heard.changes.slice(from)) {
      if (!member) list = list.filter((m) => m.user !== user);
      else if (!list.some((m) => m.user === user)) list.push(member), added.push(user);
    }
    const presence = this._presenceSince(asked, members);
    this._update({ members: { ...this._snap.members, [room]: Object.freeze(list) }, presence });
    if (added.length) this.presence(added).catch((err) => this._emitError(err));
    return members;
  }

  /**
   * The owner invites a user (the way into a private room): `invited` is
   * true, and the user joins by accepting. With `--member-adds direct`,
   * the owner adds them at once (`changed`).
   */
  addMember(room, user) {
    return this._request("POST", `/v1/rooms/${enc(room)}/members`, { body: { user }, retry: true });
  }

  /** The owner removes a member, or withdraws an invitation. */
  removeMember(room, user) {
    return this._request("DELETE", `/v1/rooms/${enc(room)}/members/${enc(user)}`, { retry: true });
  }

  /**
   * Your open invitations, the newest first. Accept one with join(room);
   * invitation:created and invitation:deleted say when the list changes.
   */
  async invitations() {
    const { invitations } = await this._request("GET", "/v1/invitations", { retry: true });
    return invitations;
  }

  /** Declines your invitation to a room. */
  declineInvitation(room) {
    return this._request("DELETE", `/v1/invitations/${enc(room)}`, { retry: true });
  }

  /**
   * Posts a message and resolves with it as stored. Until then it is in
   * the snapshot's pending list of the room; if it fails it stays there,
   * marked failed, and send with the same clientId tries it again.
   * Retries keep the client_id, so the server stores it once.
   */
  async send(room, text, { clientId } = {}) {
    const id = clientId ?? newClientId();
    this._stopTyping(room, false);
    this._setPending(room, id, { client_id: id, text, status: "sending", error: null });
    try {
      const msg = await this._request("POST", `/v1/rooms/${enc(room)}/messages`, { body: { text, client_id: id }, retry: true });
      this._setPending(room, id, null);
      this._mergeMessages(room, [msg]);
      return msg;
    } catch (err) {
      if (err.code !== "closed") this._setPending(room, id, { client_id: id, text, status: "failed", error: { code: err.code, message: err.message } });
      throw err;
    }
  }

  /** The author edits a message, within the server's --edit-window; resolves with it edited. */
  async editMessage(room, id, text) {
    const msg = await this._request("PATCH", `/v1/rooms/${enc(room)}/messages/${id}`, { body: { text }, retry: true });
    this._replaceMessage(msg);
    return msg;
  }

  /** The author or the room's owner deletes a message; resolves with its tombstone. */
  async deleteMessage(room, id) {
    const msg = await this._request("DELETE", `/v1/rooms/${enc(room)}/messages/${id}`, { retry: true });
    this._replaceMessage(msg);
    return msg;
  }

  /** Drops a failed message from the pending list. */
  discard(room, clientId) { this._setPending(room, clientId, null); }

  /** One page of history, oldest first: {messages, has_more}. */
  history(room, { before, after, limit } = {}) {
    return this._request("GET", `/v1/rooms/${enc(room)}/messages`, { query: { before, after, limit }, retry: true });
  }

  /**
   * Says you are typing in room (or stopped, with false). Call it on every
   * keystroke: it sends at most one ping per typingInterval, and a stop
   * after typingIdle without a call. send() stops it too.
   */
  typing(room, on = true) {
    if (!on) return this._stopTyping(room, true);
    let t = this._typing.get(room);
    if (!t) this._typing.set(room, (t = { active: false, sentAt: 0, idle: 0 }));
    clearTimeout(t.idle);
    t.idle = setTimeout(() => this._stopTyping(room, true), this._o.typingIdle);
    const now = Date.now();
    if (t.active && now - t.sentAt < this._o.typingInterval) return Promise.resolve(null);
    t.active = true;
    t.sentAt = now;
    return quiet(this._request("POST", `/v1/rooms/${enc(room)}/typing`, { body: { typing: true } }));
  }

  _stopTyping(room, tell) {
    const t = this._typing.get(room);
    if (!t) return Promise.resolve(null);
    clearTimeout(t.idle);
    this._typing.delete(room);
    if (!tell || !t.active) return Promise.resolve(null);
    return quiet(this._request("POST", `/v1/rooms/${enc(room)}/typing`, { body: { typing: false } }));
  }

  /**
   * Marks room read up to messageId. A receipt never moves backwards, so
   * an older id sends nothing; calls made while one is on its way send
   * only the newest id, once it is answered.
   */
  markRead(room, messageId) {
    const r = this._snap.rooms.find((x) => x.id === room);
    const mine = this._snap.receipts[room]?.[this._snap.user] ?? 0;
    if (messageId <= Math.max(r?.last_read ?? 0, mine)) return Promise.resolve(null);
    this._noteRead(room, this._snap.user, messageId, true);
    let s = this._reads.get(room);
    if (!s) this._reads.set(room, (s = { inFlight: null, want: 0 }));
    s.want = Math.max(s.want, messageId);
    if (!s.inFlight) s.inFlight = this._flushRead(room, s);
    return quiet(s.inFlight);
  }

  async _flushRead(room, s) {
    try {
      while (s.want) {
        const id = s.want;
        s.want = 0;
        await this._request("POST", `/v1/rooms/${enc(room)}/read`, { body: { message_id: id }, retry: true });
      }
    } finally {
      s.inFlight = null;
      if (this._reads.get(room) === s && !s.want) this._reads.delete(room);
    }
    return null;
  }

  /** Every member's read position in room; also refreshes the snapshot's. */
  async receipts(room) {
    const { receipts } = await this._request("GET", `/v1/rooms/${enc(room)}/receipts`, { retry: true });
    // A receipt never moves backwards: an event that came while the
    // answer was on its way may be newer.
    const byUser = { ...this._snap.receipts[room] };
    for (const r of receipts) byUser[r.user] = Math.max(byUser[r.user] ?? 0, r.message_id);
    this._update({ receipts: { ...this._snap.receipts, [room]: Object.freeze(byUser) } });
    return receipts;
  }

  /** Presence of users who share a room with you; also refreshes the snapshot's. */
  async presence(users) {
    const list = [].concat(users);
    if (!list.length) return [];
    const asked = this._presenceSeq;
    const { presence } = await this._request("GET", "/v1/presence", { query: { user: list }, retry: true });
    this._update({ presence: this._presenceSince(asked, presence) });
    return presence;
  }

  // The snapshot's presence with the answer of a query asked when the
  // count of presence events was asked: a user whose presence:changed came
  // while the answer was on its way keeps what the event said, which is
  // newer than the answer.
  _presenceSince(asked, list) {
    const next = { ...this._snap.presence };
    for (const p of list) {
      if ((this._presenceAt.get(p.user) ?? 0) > asked) continue;
      next[p.user] = Object.freeze({ status: p.status, last_seen: p.last_seen });
    }
    return next;
  }

  /** Sets your status (online, away or dnd) while a stream is open. */
  setStatus(status) {
    return this._request("POST", "/v1/presence", { body: { status }, retry: true });
  }

  // ---- state ----

  /**
   * Loads what a page needs to show room: the newest page of messages, the
   * members with their presence, and the receipts. Once per room; the
   * stream keeps it current from there.
   */
  openRoom(room) {
    let p = this._opened.get(room);
    if (!p) {
      p = Promise.all([this.loadMessages(room), this.members(room), this.receipts(room)]).then(() => undefined);
      this._opened.set(room, p);
      p.catch(() => { if (this._opened.get(room) === p) this._opened.delete(room); });
    }
    return p;
  }

  /** Loads the newest page of room's messages, unless it is loaded. */
  async loadMessages(room) {
    if (this._msgIds.has(room)) return this._snap.messages[room];
    const page = await this._newestPage(room);
    if (!this._msgIds.has(room)) {
      this._mergeMessages(room, page.messages, true);
      this._update({ hasMore: { ...this._snap.hasMore, [room]: page.has_more } });
    }
    return this._snap.messages[room];
  }

  // The newest page of room, with the messages the stream brought while
  // it was on its way: the page may have been read before they were
  // committed, and without them there would be a gap before the next.
  async _newestPage(room) {
    const came = [];
    this._loading.set(room, came);
    try {
      const page = await this.history(room, { limit: this._o.pageSize });
      return { ...page, messages: [...page.messages, ...came] };
    } finally {
      if (this._loading.get(room) === came) this._loading.delete(room);
    }
  }

  /** Loads the page of messages before the oldest loaded; resolves with whether older ones remain. */
  async loadOlder(room) {
    const have = this._snap.messages[room];
    if (!have?.length) {
      await this.loadMessages(room);
      return !!this._snap.hasMore[room];
    }
    if (this._snap.hasMore[room] === false) return false;
    const page = await this.history(room, { before: have[0].id, limit: this._o.pageSize });
    this._mergeMessages(room, page.messages, true);
    this._update({ hasMore: { ...this._snap.hasMore, [room]: page.has_more } });
    return page.has_more;
  }

  /** The loaded messages of room, oldest first. */
  messages(room) { return this._snap.messages[room] ?? EMPTY; }
  /** Who is typing in room, you excepted: [{user, name}]. */
  typists(room) { return this._snap.typing[room] ?? EMPTY; }
  /** room's unread count, from the server's and what came since. */
  unread(room) { return this._snap.rooms.find((r) => r.id === room)?.unread ?? 0; }

  _update(patch) {
    this._snap = Object.freeze({ ...this._snap, ...patch });
    if (this._notifyQueued) return;
    this._notifyQueued = true;
    queueMicrotask(() => {
      this._notifyQueued = false;
      this.dispatchEvent(new Event("change"));
    });
  }

  // Merges messages into room's list, oldest first, each id once; returns
  // how many were new. Only a room whose messages were loaded has a list
  // (load is true for the loaders): a message that comes for another
  // would leave a gap before it, which loadMessages would never fill.
  _mergeMessages(room, list, load = false) {
    let ids = this._msgIds.get(room);
    if (!ids) {
      if (!load) return 0;
      this._msgIds.set(room, (ids = new Set()));
    }
    const cur = this._snap.messages[room] ?? EMPTY;
    const fresh = [];
    const replaced = new Map();
    for (const m of list) {
      if (!ids.has(m.id)) {
        ids.add(m.id);
        fresh.push(Object.freeze({ ...m }));
      } else if (m.edited_at || m.deleted_at) {
        replaced.set(m.id, Object.freeze({ ...m }));
      }
    }
    if (!fresh.length && !replaced.size) {
      if (!this._snap.messages[room]) this._update({ messages: { ...this._snap.messages, [room]: EMPTY } });
      return 0;
    }
    let next = replaced.size ? cur.map((m) => replaced.get(m.id) ?? m) : cur.slice();
    const sorted = fresh.every((m, i) => i === 0 || fresh[i - 1].id < m.id);
    next.push(...fresh);
    if (!(sorted && (!cur.length || !fresh.length || fresh[0].id > cur[cur.length - 1].id))) next.sort((a, b) => a.id - b.id);
    this._update({ messages: { ...this._snap.messages, [room]: Object.freeze(next) } });
    return fresh.length;
  }

  // An edit or a deletion of a loaded message: its new version replaces it.
  _replaceMessage(msg) {
    if (!this._msgIds.get(msg.room)?.has(msg.id)) return;
    const next = this._snap.messages[msg.room].map((m) => (m.id === msg.id ? Object.freeze({ ...msg }) : m));
    this._update({ messages: { ...this._snap.messages, [msg.room]: Object.freeze(next) } });
  }

  _setPending(room, clientId, entry) {
    const cur = this._snap.pending[room] ?? EMPTY;
    const rest = cur.filter((p) => p.client_id !== clientId);
    if (!entry && rest.length === cur.length) return;
    const next = entry ? [...rest, Object.freeze(entry)] : rest;
    const pending = { ...this._snap.pending };
    if (next.length) pending[room] = Object.freeze(next);
    else delete pending[room];
    this._update({ pending });
  }

  // _patchRoom replaces room in the rooms list by fn(room), or removes it
  // when fn gives null. fn must be idempotent: a rooms() answer on its way
  // gets it again.
  _patchRoom(room, fn) {
    for (const heard of this._roomsFetches) heard.push([room, fn]);
    const i = this._snap.rooms.findIndex((r) => r.id === room);
    if (i < 0) return;
    const next = fn(this._snap.rooms[i]);
    const rooms = this._snap.rooms.slice();
    if (next) rooms[i] = Object.freeze(next);
    else rooms.splice(i, 1);
    this._update({ rooms: Object.freeze(rooms) });
  }

  // _noteRead moves user's read position in room forwards; own says it is
  // ours, which markRead knows before the stream has told who we are.
  _noteRead(room, user, messageId, own = user === this._snap.user) {
    const cur = this._snap.receipts[room] ?? {};
    if (user) {
      if ((cur[user] ?? 0) >= messageId) return;
      this._update({ receipts: { ...this._snap.receipts, [room]: Object.freeze({ ...cur, [user]: messageId }) } });
    }
    if (!own) return;
    this._patchRoom(room, (r) => {
      const lastRead = Math.max(r.last_read ?? 0, messageId);
      const msgs = this._snap.messages[room] ?? EMPTY;
      // The unread messages are all loaded when the oldest loaded one is
      // at or before the read position (or there is nothing older).
      const complete = msgs.length && (msgs[0].id <= (r.last_read ?? 0) + 1 || this._snap.hasMore[room] === false);
      if (complete) {
        const unread = msgs.filter((m) => m.id > lastRead && m.user !== this._snap.user).length;
        return { ...r, last_read: lastRead, unread };
      }
      if (!msgs.length || messageId >= msgs[msgs.length - 1].id) return { ...r, last_read: lastRead, unread: 0 };
      this._scheduleRooms();
      return { ...r, last_read: lastRead };
    });
  }

  // Refetches the rooms list soon, once for a burst of reasons.
  _scheduleRooms() {
    if (this._roomsTimer || this._state === "closed") return;
    this._roomsTimer = setTimeout(() => {
      this._roomsTimer = 0;
      this.rooms().catch((err) => this._emitError(err));
    }, 50);
  }

  _forgetRoom(room) {
    const drop = (obj) => {
      if (!(room in obj)) return obj;
      const next = { ...obj };
      delete next[room];
      return next;
    };
    this._msgIds.delete(room);
    this._loading.delete(room);
    this._opened.delete(room);
    this._stopTyping(room, false);
    this._patchRoom(room, () => null);
    const s = this._snap;
    this._update({
      messages: drop(s.messages), hasMore: drop(s.hasMore), pending: drop(s.pending),
      typing: drop(s.typing), members: drop(s.members), receipts: drop(s.receipts),
      online: drop(s.online),
    });
  }

  // Applies a stream event to the snapshot.
  _apply(type, d) {
    const s = this._snap;
    switch (type) {
      case "ready": {
        const first = !this._everLive;
        this._failures = 0;
        this._update({ user: d?.user ?? s.user });
        this._setState("live");
        if (first) {
          this._catchUp();
        } else {
          // Typing and presence are not replayed: what was missed is
          // stale. Typing ends by itself; presence is asked again.
          this._update({ typing: {} });
          this._refreshPresence();
        }
        return;
      }
      case "resync":
        // The stream could not resume where it left off: refetch.
        this._update({ typing: {} });
        this._catchUp();
        return;
      case "message:created": {
        // A stream carries each message once; a loaded room may also have
        // it from send() or a page of history.
        this._loading.get(d.room)?.push(d);
        const added = this._msgIds.has(d.room) ? this._mergeMessages(d.room, [d]) : 1;
        if (added) {
          // The room's newest message says whether its unread count has this one.
          this._patchRoom(d.room, (r) => {
            if (d.id <= (r.last_message?.id ?? 0)) return r;
            const unread = d.user !== s.user && d.id > (r.last_read ?? 0) ? (r.unread ?? 0) + 1 : r.unread;
            return { ...r, last_message: d, unread };
          });
        }
        if (d.user !== s.user) this._dropTypist(d.room, d.user);
        return;
      }
      case "message:updated":
      case "message:deleted":
        this._replaceMessage(d);
        return;
      case "member:joined":
        if (d.user === s.user) {
          this._scheduleRooms();
          return;
        }
        const m = Object.freeze({ user: d.user, name: d.name ?? "", owner: false, joined_at: null });
        this._memberChanges.get(d.room)?.changes.push({ user: d.user, member: m });
        if (s.members[d.room] && !s.members[d.room].some((m) => m.user === d.user)) {
          this._update({ members: { ...s.members, [d.room]: Object.freeze([...s.members[d.room], m]) } });
          this.presence([d.user]).catch((err) => this._emitError(err));
        }
        return;
      case "member:left":
        if (d.user === s.user) {
          this._forgetRoom(d.room);
          return;
        }
        this._memberChanges.get(d.room)?.changes.push({ user: d.user });
        if (s.members[d.room]) {
          this._update({ members: { ...s.members, [d.room]: Object.freeze(s.members[d.room].filter((m) => m.user !== d.user)) } });
        }
        this._dropTypist(d.room, d.user);
        return;
      case "room:updated": {
        // The room's settings as they now are; no owner means none.
        const { room, by, ...settings } = d;
        this._patchRoom(room, ({ owner, ...r }) => ({ ...r, ...settings }));
        return;
      }
      case "room:deleted":
        this._forgetRoom(d.room);
        return;
      case "receipt:updated":
        this._noteRead(d.room, d.user, d.message_id, d.user === s.user);
        return;
      case "typing:started": {
        if (d.user === s.user) return;
        const cur = s.typing[d.room] ?? EMPTY;
        if (cur.some((t) => t.user === d.user)) return;
        this._update({ typing: { ...s.typing, [d.room]: Object.freeze([...cur, Object.freeze({ user: d.user, name: d.name ?? "" })]) } });
        return;
      }
      case "typing:stopped":
        this._dropTypist(d.room, d.user);
        return;
      case "presence:changed":
        this._presenceAt.set(d.user, ++this._presenceSeq);
        this._update({ presence: { ...s.presence, [d.user]: Object.freeze({ status: d.status, last_seen: d.last_seen }) } });
        return;
      case "presence:stale":
        // Ephemeral events may have been lost on their way here: the
        // typists shown may have stopped, and presence may have changed.
        this._update({ typing: {} });
        this._refreshPresence();
        return;
      case "room:online":
        // A room over the server's presence limit: a count instead of its
        // members' changes. Back under the limit, changes come again, and
        // what changed meanwhile is refetched.
        this._update({ online: { ...s.online, [d.room]: Object.freeze({ online: d.online, presence: d.presence }) } });
        if (d.presence && s.members[d.room]) this.members(d.room).catch((err) => this._emitError(err));
        return;
    }
  }

  _dropTypist(room, user) {
    const cur = this._snap.typing[room];
    if (!cur?.some((t) => t.user === user)) return;
    const next = cur.filter((t) => t.user !== user);
    const typing = { ...this._snap.typing };
    if (next.length) typing[room] = Object.freeze(next);
    else delete typing[room];
    this._update({ typing });
  }

  _refreshPresence() {
    for (const room of Object.keys(this._snap.members)) this.members(room).catch((err) => this._emitError(err));
  }

  // Refetches over REST what a stream that did not resume may have missed:
  // the rooms with their unread counts, and for each room the page has
  // loaded, the messages after the newest it has (or, when that is more
  // than a page, the newest page instead, so that what it holds stays
  // without a gap), the receipts and the members.
  async _catchUp() {
    try {
      await this.rooms();
      const mine = new Set(this._snap.rooms.map((r) => r.id));
      await Promise.all(Object.keys(this._snap.messages).map(async (room) => {
        if (!mine.has(room)) {
          this._forgetRoom(room);
          return;
        }
        const have = this._snap.messages[room];
        if (have.length) {
          const page = await this.history(room, { after: have[have.length - 1].id, limit: this._o.pageSize });
          if (page.has_more) {
            const newest = await this._newestPage(room);
            this._msgIds.set(room, new Set());
            this._update({ messages: { ...this._snap.messages, [room]: EMPTY }, hasMore: { ...this._snap.hasMore, [room]: newest.has_more } });
            this._mergeMessages(room, newest.messages, true);
          } else {
            this._mergeMessages(room, page.messages, true);
          }
        } else {
          const page = await this._newestPage(room);
          this._mergeMessages(room, page.messages, true);
          this._update({ hasMore: { ...this._snap.hasMore, [room]: page.has_more } });
        }
        if (this._snap.receipts[room]) await this.receipts(room);
        if (this._snap.members[room]) await this.members(room);
      }));
    } catch (err) {
      this._emitError(err);
    }
  }
}

// A HeraldError from a failed answer.
async function toError(res) {
  let code = "http_" + res.status;
  let message = `${res.status} ${res.statusText}`.trim();
  try {
    const body = await res.json();
    if (body?.error?.code) {
      code = body.error.code;
      message = body.error.message ?? message;
    }
  } catch {
    // Not Herald's JSON: a proxy's error page.
  }
  const retryAfter = Number(res.headers.get("Retry-After")) || 0;
  return new HeraldError(res.status, code, message, retryAfter);
}

function enc(s) { return encodeURIComponent(s); }

function newClientId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return "c-" + c.randomUUID();
  return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

// quiet marks a promise as handled, so that a caller that does not wait
// for a typing ping or a receipt gets no unhandled rejection; one that
// waits still sees the error.
function quiet(p) {
  p.catch(() => {});
  return p;
}
