// Type declarations of react.js, the React hooks over herald.js.
import type { Herald, Snapshot, Options, Room, Message, Pending, Typist, Member, Presence, RoomOnline, HeraldError } from "./herald.js";

export { Herald, HeraldError, EVENT_TYPES, STATES } from "./herald.js";

export interface HeraldState extends Snapshot {
  /** The client, for its actions; null until the first effect has run. */
  readonly client: Herald | null;
}

/** Connects with options for as long as the component is mounted, or renders a client made elsewhere. */
export declare function useHerald(options: Options | Herald): HeraldState;

export interface RoomState {
  readonly room: Room | null;
  /** Whether the newest page of messages has been loaded. */
  readonly loaded: boolean;
  readonly messages: readonly Message[];
  readonly hasMore: boolean;
  readonly pending: readonly Pending[];
  readonly typing: readonly Typist[];
  readonly members: readonly (Member & Presence)[];
  /** A room over the server's presence limit: its online count; null otherwise. */
  readonly online: RoomOnline | null;
  readonly receipts: Readonly<Record<string, number>>;
  readonly unread: number;
  readonly error: HeraldError | null;
  loadOlder(): Promise<boolean>;
  send(text: string, options?: { clientId?: string }): Promise<Message>;
  setTyping(typing?: boolean): Promise<null>;
  /** Marks read up to id, by default the newest loaded message. */
  markRead(id?: number): Promise<null>;
  leave(): Promise<null>;
}

/** One room: loads it once, then renders it as the stream keeps it current. */
export declare function useRoom(herald: HeraldState | Herald | null, room: string | null | undefined): RoomState;
