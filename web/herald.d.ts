// Type declarations of herald.js, Herald's browser client. The payloads
// are those of openapi.yaml (x-sse-events and the REST answers).

/** Stream events Herald sends. */
export declare const EVENT_TYPES: readonly EventType[];
/** Connection states. */
export declare const STATES: readonly ConnectionState[];

/**
 * connecting: opening the first stream; live: the stream is open;
 * reconnecting: the stream was lost and is being reopened; offline: the
 * browser has no network, and the client waits for it; closed: close()
 * was called, or connect() not yet.
 */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline" | "closed";

/** Times are ISO 8601 strings with milliseconds, in UTC. */
export type Time = string;

export interface Message {
  id: number;
  room: string;
  /** The author; absent for a system message. */
  user?: string;
  name?: string;
  /** Present, true, for a message the server API posted as itself. */
  system?: true;
  /** Absent when the message was deleted. */
  text?: string;
  client_id?: string;
  created_at: Time;
  edited_at?: Time;
  deleted_at?: Time;
}

export interface Room {
  id: string;
  /** dm: a direct conversation of two members, with no owner and no name. */
  kind: "room" | "dm";
  name: string;
  topic: string;
  private: boolean;
  /** Absent for a DM and for a room the server API provisioned without one. */
  owner?: string;
  created_at: Time;
  /** Other users' messages after your read position (in GET /v1/rooms). */
  unread?: number;
  /** Your read position, a message id; 0 when nothing was read. */
  last_read?: number;
  /** The newest message that is not deleted (in GET /v1/rooms). */
  last_message?: Message | null;
  /** What the list is ordered by, newest first (in GET /v1/rooms). */
  last_activity_at?: Time;
  /** For a DM, the other member. */
  peer?: { id: string; name?: string };
}

/** A room as GET /v1/rooms/{room} shows it. */
export interface RoomDetails extends Room {
  member_count: number;
  member: boolean;
}

export interface Member {
  user: string;
  name: string;
  owner: boolean;
  joined_at: Time | null;
}

export type Status = "online" | "away" | "dnd" | "offline";

export interface Presence {
  status: Status;
  last_seen: Time | null;
}

export interface Receipt {
  user: string;
  message_id: number;
  updated_at: Time;
}

export interface Typist {
  user: string;
  name: string;
}

/** A message on its way, or one that failed (send it again with its clientId). */
export interface Pending {
  client_id: string;
  text: string;
  status: "sending" | "failed";
  error: { code: string; message: string } | null;
}

/** An open invitation to a room, as its invitee sees it. */
export interface Invitation {
  room: string;
  kind: "room" | "dm";
  name: string;
  private: boolean;
  /** Who invited, and their display name; absent for the app's backend. */
  by?: string;
  by_name?: string;
  created_at: Time;
}

export interface EventMap {
  ready: { user: string; heartbeat_ms: number };
  resync: { reason: "malformed_id" | "unknown_epoch" | "unknown_position" | "expired" | string };
  "message:created": Message;
  "message:updated": Message;
  "message:deleted": Message;
  "member:joined": { room: string; user: string; name?: string; by?: string };
  "member:left": { room: string; user: string; name?: string; by?: string; reason?: "left" | "removed" };
  "room:updated": { room: string; name: string; topic: string; private: boolean; owner?: string; by?: string };
  "room:deleted": { room: string; by?: string };
  "receipt:updated": { room: string; user: string; message_id: number };
  "typing:started": { room: string; user: string; name?: string };
  "typing:stopped": { room: string; user: string; name?: string };
  "presence:changed": { user: string; status: Status; last_seen: Time | null };
  "room:online": { room: string } & RoomOnline;
  /** Ephemeral events may have been lost: refetch presence; typists may have stopped. */
  "presence:stale": Record<string, never>;
  custom: { event: string; data: unknown; room?: string };
  "invitation:created": Invitation;
  "invitation:deleted": { room: string; reason: "joined" | "declined" | "withdrawn" | "room_deleted" };
}

export type EventType = keyof EventMap;

/** Events of the client itself. */
export interface ClientEventMap {
  state: { state: ConnectionState; previous: ConnectionState };
  change: undefined;
  error: HeraldError;
}

/** The client's state, immutable: a new object after every change. */
/** A big room's online count (room:online). */
export interface RoomOnline {
  online: number;
  /** Whether the room's members get each other's presence:changed. */
  presence: boolean;
}

export interface Snapshot {
  readonly state: ConnectionState;
  /** When the last stream event arrived, in ms since the epoch. */
  readonly lastEventAt: number | null;
  readonly lastEventId: string;
  /** The stream's user, once it is live. */
  readonly user: string;
  readonly rooms: readonly Room[];
  /** Loaded messages per room, oldest first (rooms that were loaded only). */
  readonly messages: Readonly<Record<string, readonly Message[]>>;
  /** Whether older messages remain, per loaded room. */
  readonly hasMore: Readonly<Record<string, boolean>>;
  readonly pending: Readonly<Record<string, readonly Pending[]>>;
  /** Who is typing, per room, you excepted. */
  readonly typing: Readonly<Record<string, readonly Typist[]>>;
  readonly members: Readonly<Record<string, readonly Member[]>>;
  readonly presence: Readonly<Record<string, Presence>>;
  /**
   * Per room over the server's presence limit (--presence-room-limit): how
   * many members are online, from room:online. presence false: the room's
   * members' presence:changed do not come, show the count instead.
   */
  readonly online: Readonly<Record<string, RoomOnline>>;
  /** Read positions per room and user. */
  readonly receipts: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

export interface Options {
  /** Herald's base URL; "" (the default) for the page's origin. */
  url?: string;
  /**
   * The user's JWT, or a function that returns one. The function is
   * called again with refresh true when the server refuses the token it
   * gave (expired), and whenever the client needs a token after a
   * failure of the function.
   */
  token: string | ((o: { refresh: boolean }) => string | Promise<string>);
  /** Send the stream cookie to another origin; default: when url is another origin. */
  withCredentials?: boolean;
  /** At most one typing ping per room this often, in ms (default 3000). */
  typingInterval?: number;
  /** A typing stop after this long without a typing() call, in ms (default 4000). */
  typingIdle?: number;
  /** Retries of a safe action (default 3). */
  retries?: number;
  /** Backoff of retries and reconnects, in ms (default 500 to 30000), with jitter. */
  backoff?: { min?: number; max?: number };
  /** Messages per page of history (default 50). */
  pageSize?: number;
  /** Replacements, for tests or other environments. */
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
}

export declare class HeraldError extends Error {
  constructor(status: number, code: string, message: string, retryAfter?: number);
  /** HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The server's code (openapi.yaml), or network, closed, token, bad_answer. */
  readonly code: string;
  /** Seconds, from Retry-After. */
  readonly retryAfter: number;
}

export interface Page {
  messages: Message[];
  has_more: boolean;
}

export declare class Herald extends EventTarget {
  constructor(options: Options);

  readonly state: ConnectionState;
  readonly lastEventAt: number | null;
  readonly lastEventId: string;
  readonly user: string;

  /** Opens the stream; it stays open, reconnecting as needed, until close(). */
  connect(): this;
  /** Closes the stream and stops every timer, listener and request. */
  close(): void;

  /** Calls fn with each event's payload until the returned function is called. */
  on<K extends EventType>(type: K, fn: (data: EventMap[K], e: CustomEvent<EventMap[K]>) => void): () => void;
  on<K extends keyof ClientEventMap>(type: K, fn: (data: ClientEventMap[K], e: CustomEvent<ClientEventMap[K]>) => void): () => void;
  on(type: string, fn: (data: unknown, e: CustomEvent) => void): () => void;

  /** Calls fn when the snapshot changes; returns the unsubscribe function. */
  subscribe(fn: () => void): () => void;
  getSnapshot(): Snapshot;

  createRoom(name: string, options?: { private?: boolean }): Promise<Room>;
  rooms(): Promise<Room[]>;
  room(room: string): Promise<RoomDetails>;
  updateRoom(room: string, changes: { name?: string; topic?: string; owner?: string }): Promise<Room>;
  deleteRoom(room: string): Promise<null>;
  dm(user: string): Promise<Room>;
  join(room: string): Promise<{ room: string; user: string; changed: boolean }>;
  leave(room: string): Promise<null>;
  members(room: string): Promise<(Member & Presence)[]>;
  addMember(room: string, user: string): Promise<{ room: string; user: string; changed: boolean; invited?: boolean }>;
  removeMember(room: string, user: string): Promise<null>;
  invitations(): Promise<Invitation[]>;
  declineInvitation(room: string): Promise<null>;
  send(room: string, text: string, options?: { clientId?: string }): Promise<Message>;
  editMessage(room: string, id: number, text: string): Promise<Message>;
  deleteMessage(room: string, id: number): Promise<Message>;
  discard(room: string, clientId: string): void;
  history(room: string, query?: { before?: number; after?: number; limit?: number }): Promise<Page>;
  typing(room: string, typing?: boolean): Promise<null>;
  markRead(room: string, messageId: number): Promise<null>;
  receipts(room: string): Promise<Receipt[]>;
  presence(users: string | string[]): Promise<(Presence & { user: string })[]>;
  setStatus(status: "online" | "away" | "dnd"): Promise<null>;

  /** Loads a room's newest messages, members and receipts, once. */
  openRoom(room: string): Promise<void>;
  loadMessages(room: string): Promise<readonly Message[]>;
  /** Loads the page before the oldest loaded; resolves with whether more remain. */
  loadOlder(room: string): Promise<boolean>;
  messages(room: string): readonly Message[];
  typists(room: string): readonly Typist[];
  unread(room: string): number;

  addEventListener<K extends EventType>(type: K, listener: (e: CustomEvent<EventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener<K extends keyof ClientEventMap>(type: K, listener: (e: CustomEvent<ClientEventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}
