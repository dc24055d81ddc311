/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** An entity's fields: a JSON object. */
export type Fields = { [field: string]: Json };
/** Stable error codes: the protocol's, the engine's and the browser store's.
 *  Checked against the core's `ErrorCode::ALL` by `tests/docs.rs`. */
export type ErrorCode =
  | "SYNC_UNAUTHORIZED" | "SYNC_FORBIDDEN" | "SYNC_RATE_LIMITED" | "SYNC_OFFLINE"
  | "SYNC_UNREACHABLE" | "SYNC_SERVER_ERROR" | "SNAPSHOT_FAILED" | "DELTA_FAILED" | "CURSOR_UNKNOWN"
  | "RECONCILE_FAILED" | "MANIFEST_TOO_LARGE" | "PAYLOAD_TOO_LARGE" | "EVENT_INVALID"
  | "EVENT_DUPLICATE" | "EVENT_IN_FLIGHT" | "STORAGE_FAILED" | "CONFLICT" | "NOT_FOUND"
  | "ALREADY_EXISTS" | "POLICY_VIOLATION" | "SCHEMA_UNSUPPORTED" | "OFFLINE_PRIMER_STALE"
  | "RETRIES_EXHAUSTED" | "STORE_CORRUPT" | "QUOTA_EXCEEDED" | "INVALID_STATE"
  | "STORE_GONE" | "STORE_WRONG_KEY" | "STORE_KEY_MISMATCH" | "TERMINAL_MISMATCH"
  | "NOT_PAIRED" | "BAD_ARGUMENT" | "LEADER_UNAVAILABLE" | "INTERNAL";
/** Codes of errors thrown by this package (the same list as ErrorCode). */
export type TideSyncErrorCode = ErrorCode;
/** What every rejected promise and thrown error of this package carries. */
export interface TideSyncError extends Error { code: TideSyncErrorCode; message: string; }

export type ConflictPolicy =
  | "last-write-wins" | "merge-three-way" | "manual-resolve" | "server-wins" | "append-only";

/** Key material for encryption at rest; the data key itself is random and stored only wrapped. */
export type KeyMaterial =
  | { passphrase: string }      // PBKDF2-SHA256, 600,000 iterations
  | { hostKey: Uint8Array }     // >= 16 bytes from the host (e.g. Electron safeStorage)
  | { webCrypto: true }         // a non-extractable AES-GCM key kept by the browser
  | { plaintext: true };        // no encryption

export interface OpenOptions {
  dbName: string;
  key: KeyMaterial;
  /** Base URL of the sync server; "" for the page's own origin. */
  serverUrl: string;
  /** The terminal's API key. Opening a new database with the key alone
   *  pairs it: the server says which terminal and branch the key was issued
   *  for (`GET /v1/whoami`, so this first open needs the server), and an
   *  encrypted database keeps the key, sealed like its records, so later
   *  opens need neither the key nor the ids, offline too. A key that
   *  belongs to another terminal or branch than the database or the ids
   *  given is `TERMINAL_MISMATCH` at open when the server answers (else at
   *  the next open that reaches it). A key the server refuses is used for
   *  this open and not kept. A `credentials` callback does not pair. Without any key (and without
   *  `credentials`), a database that knows its terminal opens and works
   *  offline, and sync reports SYNC_UNAUTHORIZED until a key is given. */
  apiKey?: string;
  /** A one-time pairing code (`tidesync-server issue-pairing-code`), instead
   *  of `apiKey`: the first open redeems it at the server for the terminal's
   *  key (`POST /v1/pair`), and the database keeps that key, so a pairing
   *  link can carry the code and no key (a link stays in the browser's
   *  history). A used or expired code is SYNC_UNAUTHORIZED at open. With
   *  `apiKey` too, with `rememberKey: false` or on a plaintext database it
   *  is BAD_ARGUMENT, before the code is spent. */
  pairingCode?: string;
  /** Keep `apiKey` in the database (default true; only an encrypted one
   *  ever keeps it). `false` also removes a key kept before (this open still
   *  syncs with it until closed). */
  rememberKey?: boolean;
  /**
   * Gives the current API key (or a promise of it; null or undefined: none
   * yet), so the key can be refreshed or rotated without reopening. Called
   * before a request when no key is held, and again after a 401 (once per
   * request: if it gives another key the request is retried, else the 401
   * stands). With `apiKey` too, that key is used first. After a
   * SYNC_UNAUTHORIZED, `syncNow()` asks it again and resumes at once if
   * the key changed.
   */
  credentials?: () => string | null | undefined | Promise<string | null | undefined>;
  /** This terminal. Optional once the database was opened, or paired by
   *  its key, once; given, it must be the database's (else
   *  `TERMINAL_MISMATCH`). */
  terminalId?: string;
  /** Its branch: as `terminalId`. */
  branchId?: string;
  policies?: { [collection: string]: ConflictPolicy };
  /** Sync in the background when leading (default true). */
  autoSync?: boolean;
  /** How often the leader pulls when idle (ms, default 30000). */
  pullIntervalMs?: number;
  /** Keep the server's live channel open (`GET /v1/events`, default true):
   *  a change another device makes is pulled as soon as the server has it;
   *  while the channel is down, the `pullIntervalMs` poll goes on. */
  live?: boolean;
  /** Attempts before a mutation becomes a dead letter (default: the core's). */
  maxAttempts?: number;
  /** The app's payload schema version (default 1). Raising it runs `migrations` on queued mutations. */
  schemaVersion?: number;
  /** Steps that carry queued mutations from older schema versions forward. */
  migrations?: FieldMigration[];
}

/**
 * One step of a schema migration of queued mutations, from `from` to
 * `from + 1`, for `collections` (all when absent): a payload holding a
 * field of `hold_if_present` becomes a dead letter (SCHEMA_UNSUPPORTED);
 * otherwise fields are renamed (old → new), removed, and a create or append
 * gets the `defaults` it lacks. Each step runs once per store.
 */
export interface FieldMigration {
  from: number;
  collections?: string[];
  rename?: { [oldName: string]: string };
  remove?: string[];
  defaults?: Fields;
  hold_if_present?: string[];
}

/** Who a database belongs to (`identity()`): its terminal and branch, and
 *  whether its API key is kept in it. */
export interface Identity { terminal_id: string; branch_id: string; key_stored: boolean; }

export interface Hlc { wall_ms: number; counter: number; node: number; }
export interface EntityKey { collection: string; id: string; }
export interface LocalEntity {
  collection: string; id: string; fields: Fields; deleted: boolean;
  server_version: number; updated_at: Hlc; pending: number; conflicted: boolean;
}
export interface EntityState {
  collection: string; id: string; version: number; fields: Fields; deleted: boolean;
  updated_at: Hlc; last_op: string | null;
}
export type MutationKind = "create" | "patch" | "delete" | "append";
export interface Mutation {
  op_id: string; client_id: string; terminal_id: string; branch_id: string;
  collection: string; entity_id: string; kind: MutationKind; payload?: Fields;
  base_version: number; hlc: Hlc; schema_version: number; checksum: string; offline: boolean;
}
export type OutboxState =
  | { state: "pending" }
  | { state: "dead_letter"; code: ErrorCode; message: string; at_ms: number };
export interface OutboxEntry {
  seq: number; mutation: Mutation; state: OutboxState; attempts: number;
  next_attempt_at: number; sent: boolean; last_error: [ErrorCode, string] | null;
  enqueued_at: number;
}
export interface ConflictRecord {
  key: EntityKey; base: EntityState | null; local: LocalEntity | null;
  server: EntityState | null; mutations: Mutation[]; fields: string[]; detected_at: number;
}
export type Resolution =
  | { choice: "local" } | { choice: "server" } | { choice: "edited"; fields: Fields };
export type Phase = "idle" | "syncing" | "offline" | "error";
export interface Status {
  phase: Phase; pending: number; conflicts: number; dead_letters: number;
  /** `pending` per collection (a collection with none is absent): the
   *  user's own changes apart from, say, telemetry. */
  pending_by_collection: { [collection: string]: number };
  /** The last error: its code and a reason the app can show. "offline"
   *  (SYNC_OFFLINE) only when the browser says it is offline; a request that
   *  fails while it is online is phase "error" with SYNC_UNREACHABLE (the
   *  server refused the cross-origin request or could not be reached). */
  last_error: [ErrorCode, string] | null; stale: boolean;
  last_sync_at: number | null; drift_age_ms: number | null;
  /** A first snapshot has been applied completely. */
  first_sync_done: boolean;
}
export interface Metrics {
  queued: number; synced: number; retries: number; conflicts: number; dead_letters: number;
  reconcile_runs: number; delta_runs: number; snapshot_pages: number;
  push_requests: number; last_push_latency_ms: number;
}
export interface SyncReport {
  sent: number; acknowledged: number; conflicts: number; dead_lettered: number;
  pulled: number; error: ErrorCode | null;
}
export type SyncEvent =
  | { type: "changed"; key: EntityKey; entity: LocalEntity | null }
  /** Several entities of one collection changed in one commit (a pulled page, a bulk retry):
   *  their ids only; read them with get() or query(). One changed entity comes as "changed". */
  | { type: "changes"; collection: string; ids: string[] }
  | { type: "status"; status: Status }
  | { type: "alert"; code: ErrorCode; key: EntityKey; op_id: string | null; message: string };
/** A page of a query: entities with an id after `after`, at most `limit` (default 1000, max 10000). */
export interface PageOptions { after?: string; limit?: number; }
/** Methods whose signature wasm-bindgen cannot write (an optional argument). */
export interface TideSync {
  /** A page of a collection's live entities, by id; the next page starts after the last id returned. */
  query(collection: string, options?: PageOptions): Promise<LocalEntity[]>;
  /** Sends a dead letter again; with `payload` (null for a delete) it is edited first and sent under a new op id. */
  retry(seq: number, payload?: Fields | null): Promise<void>;
  /** Local audit entries after `after` (a seq), at most `limit` (default 1000). */
  audit(options?: { after?: number; limit?: number }): Promise<AuditEntry[]>;
}
export type AuditEvent =
  | { event: "queued" } | { event: "applied"; version: number } | { event: "duplicate"; version: number }
  | { event: "rebased"; onto: number } | { event: "superseded"; by_version: number }
  | { event: "conflict_opened" } | { event: "conflict_resolved"; choice: string }
  | { event: "dead_lettered"; code: ErrorCode } | { event: "retried" }
  | { event: "replaced_by"; op_id: string } | { event: "discarded" }
  | { event: "reconciled"; action: string };
export interface AuditEntry {
  seq: number; at_ms: number; op_id: string | null; key: EntityKey; event: AuditEvent;
}
/** {} for everything, { collection } for one collection, { collection, id } for one entity.
 *  The filter narrows `changed` and `changes` events only (a `changes` event passes an entity filter
 *  when its id is among the ids, and arrives whole): `status` and `alert` events reach every subscriber. */
export interface SubscriptionFilter { collection?: string; id?: string; }
