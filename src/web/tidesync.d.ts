/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** An entity's fields: a JSON object. */
export type Fields = { [field: string]: Json };
/**
 * The app's collections and the fields of each, for `TideSync.open<S>()`:
 * every call is then checked against it (collection names, field names and
 * types, results typed). Declare it with `type`, not `interface` (an
 * interface has no index signature, so it is not a `Fields`):
 * `type Hotel = { rooms: { number: string; status: "clean" | "dirty"; floor?: number } }`.
 * Declare every collection the branch syncs: events of a subscription to
 * all of them are typed as the schema's. The types are a promise the app
 * makes: the engine checks a write's payload only against `rules`
 * (OpenOptions), if given. (TypeScript 5.4 or later: `NoInfer`.)
 */
export type Schema = { [collection: string]: Fields };
/** The schema of an untyped TideSync: every collection, with JSON fields. */
export type Untyped = { [collection: string]: Fields };
/** A collection of schema `S`. */
export type CollectionName<S extends Schema> = keyof S & string;
/** The fields of `F` that may be absent. */
export type OptionalField<F extends Fields> = { [K in keyof F]-?: {} extends Pick<F, K> ? K : never }[keyof F];
/** A JSON merge patch of fields `F`: each field may be left out; `null`
 *  removes a field, so only an optional one may be `null`. */
export type Patch<F extends Fields> = { [K in keyof F]?: K extends OptionalField<F> ? F[K] | null : F[K] };
/** The fields of a view that may be of a deleted entity (which has none):
 *  each field of `F` may be undefined (`Fields` as it is). A mapped type, not
 *  a conditional one, so that a TideSync<S> is still a TideSync (covariant). */
export type MaybeFields<F extends Fields> = { [K in keyof F]: string extends K ? F[K] : F[K] | undefined };
/** Stable error codes: the protocol's, the engine's and the browser store's.
 *  Checked against the core's `ErrorCode::ALL` by `tests/docs.rs`. */
export type ErrorCode =
  | "SYNC_UNAUTHORIZED" | "SYNC_FORBIDDEN" | "SYNC_RATE_LIMITED" | "SYNC_OFFLINE"
  | "SYNC_UNREACHABLE" | "SYNC_SERVER_ERROR" | "SNAPSHOT_FAILED" | "DELTA_FAILED" | "CURSOR_UNKNOWN"
  | "RECONCILE_FAILED" | "MANIFEST_TOO_LARGE" | "PAYLOAD_TOO_LARGE" | "EVENT_INVALID"
  | "EVENT_DUPLICATE" | "OP_EXPIRED" | "EVENT_IN_FLIGHT" | "STORAGE_FAILED" | "CONFLICT" | "NOT_FOUND"
  | "ALREADY_EXISTS" | "POLICY_VIOLATION" | "SCHEMA_UNSUPPORTED" | "OFFLINE_PRIMER_STALE"
  | "RETRIES_EXHAUSTED" | "STORE_CORRUPT" | "QUOTA_EXCEEDED" | "INVALID_STATE"
  | "STORE_GONE" | "STORE_WRONG_KEY" | "STORE_KEY_MISMATCH" | "TERMINAL_MISMATCH"
  | "NOT_PAIRED" | "BAD_ARGUMENT" | "LEADER_UNAVAILABLE" | "MODEL_MISSING" | "MODEL_NOT_ALLOWED"
  | "MODEL_CORRUPT" | "INTERNAL";
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

/** The type a field's value must have (payload rules). */
export type FieldType = "string" | "number" | "integer" | "boolean" | "object" | "array";
/** One field's rule. */
export interface FieldRule { type?: FieldType; required?: boolean; enum?: readonly Json[]; max_len?: number; min?: number; max?: number; }
/** Which writes terminals may make to a collection. */
export type CollectionAccess = "read_write" | "append_only" | "read_only";
/** One collection's rules. */
export interface CollectionRules { fields?: { [field: string]: FieldRule }; additional_fields?: boolean; access?: CollectionAccess; }
/** The server's rules file (`tidesync-server serve --rules`), per collection. */
export type Rules = { [collection: string]: CollectionRules };
/** The TypeScript type of a value that passes field rule `R`: its `enum`'s
 *  values (an empty one allows every value), else its `type`'s. */
export type RuleValue<R> = R extends { enum: readonly [Json, ...Json[]] } ? R["enum"][number] : RuleType<R>;
/** The TypeScript type of field rule `R`'s `type` (none: every JSON value). */
export type RuleType<R> = R extends { type: "string" } ? string
  : R extends { type: "number" | "integer" } ? number
  : R extends { type: "boolean" } ? boolean
  : R extends { type: "object" } ? { [key: string]: Json }
  : R extends { type: "array" } ? Json[]
  : Json;
/** The fields collection rules `C` allow (see SchemaOf). */
export type RulesFields<C> = C extends { fields: infer F }
  ? { -readonly [K in keyof F as F[K] extends { required: true } ? K : never]: RuleValue<F[K]> }
    & { -readonly [K in keyof F as F[K] extends { required: true } ? never : K]?: RuleValue<F[K]> }
    & (C extends { additional_fields: false } ? {} : Fields)
  : Fields;
/**
 * The schema a rules object allows, for a rules object declared `as const`:
 * a `required` field is not optional, an `enum` is the union of its values,
 * a `type` its TypeScript type, and other fields are allowed unless
 * `additional_fields` is false.
 * `const rules = { rooms: { fields: { status: { enum: ["clean", "dirty"], required: true } } } } as const;`
 * `TideSync.open<SchemaOf<typeof rules>>({ ..., rules })`.
 */
export type SchemaOf<R extends Rules> = { -readonly [C in keyof R & string]: RulesFields<R[C]> };

export interface OpenOptions<S extends Schema = Untyped> {
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
  /** The conflict policy of each collection. */
  policies?: { [C in CollectionName<S>]?: ConflictPolicy };
  /** What each collection does with a write its anomaly scorer flags
   *  (default "record"). */
  review?: { [C in CollectionName<S>]?: ReviewPolicy };
  /** The server's rules file (the same JSON): a write it would refuse — a
   *  field of the wrong type, a missing required field, an unknown field
   *  where `additional_fields` is false, a value outside
   *  `enum`/`min`/`max`/`max_len` — is refused at once with EVENT_INVALID
   *  naming the field (`payload.status: …`), and never queued; a write to a
   *  `read_only` collection, or a create/patch/delete of an `append_only`
   *  one, is POLICY_VIOLATION. Without it, the server's verdict comes back
   *  as a dead letter. */
  rules?: Rules;
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
  /** The backoff between delivery attempts, in ms (each at least 1; the
   *  core's defaults where absent: 500, 300000, 15000); `capMs` is not below
   *  `baseMs`. Else BAD_ARGUMENT naming it. */
  retry?: RetryOptions;
  /** A cap on upload bytes per second (at least 1; absent: none): after a
   *  push request, the next waits until its bytes fit the cap. */
  maxUploadBytesPerSec?: number;
  /** The app's payload schema version (default 1). Raising it runs `migrations` on queued mutations. */
  schemaVersion?: number;
  /** Steps that carry queued mutations from older schema versions forward. */
  migrations?: FieldMigration[];
}

/** The `retry` open option: the backoff between delivery attempts, in ms. */
export interface RetryOptions {
  /** Backoff before the first retry (the upper bound of its jitter). */
  baseMs?: number;
  /** Largest backoff. */
  capMs?: number;
  /** How often to probe a server that cannot be reached. */
  offlineProbeMs?: number;
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
export interface EntityKey<C extends string = string> { collection: C; id: string; }
/** The local view of an entity of collection `C` with fields `F` (a deleted one has no fields).
 *  `pending` counts its mutations waiting to be sent, as `Status.pending`
 *  does: its dead letters and an open conflict's mutations are not pending
 *  (they show in `deadLetters()` and as `conflicted`), and the views' counts
 *  add up to the status's. */
export interface LocalEntity<F = Fields, C extends string = string> {
  collection: C; id: string; fields: F; deleted: boolean;
  server_version: number; updated_at: Hlc; pending: number; conflicted: boolean;
}
/** An entity as the server has it (a deleted one has no fields). */
export interface EntityState<F = Fields, C extends string = string> {
  collection: C; id: string; version: number; fields: F; deleted: boolean;
  updated_at: Hlc; last_op: string | null;
}
export type MutationKind = "create" | "patch" | "delete" | "append";
export interface Mutation {
  op_id: string; client_id: string; terminal_id: string; branch_id: string;
  collection: string; entity_id: string; kind: MutationKind; payload?: Fields;
  base_version: number; hlc: Hlc; schema_version: number; checksum: string; offline: boolean;
  /** The on-device anomaly score of this write, when a scorer scored it
   *  (not covered by the checksum; the server keeps it in its audit). */
  anomaly?: AnomalyScore;
}
/** An anomaly model's score of a write: higher is more unusual; `model` is
 *  a prefix of the model's SHA-256. */
export interface AnomalyScore { score: number; flagged: boolean; model: string; }
/** Why a write is held for review: its score was flagged under a
 *  `hold_flagged` collection, or the write asked for it (`{hold: true}`). */
export type HoldReason = "flagged" | "requested";
/** What a collection does with a flagged write: "record" (the default)
 *  sends it with its score; "hold_flagged" holds it for review until a
 *  person releases or discards it. */
export type ReviewPolicy = "record" | "hold_flagged";
/** Options of one write. `hold`: true holds it for review whatever its
 *  score, false sends it even if flagged (its score is still recorded);
 *  absent, the collection's review policy decides. An unknown option is
 *  BAD_ARGUMENT. */
export interface WriteOptions { hold?: boolean; }
/** What a scorer is shown of one local write: the entity's fields before
 *  and after it (`null` where there is no entity: a create's before, a
 *  delete's after). */
export interface ScoreInput {
  collection: string; entity_id: string; kind: MutationKind;
  before: Fields | null; after: Fields | null; at_ms: number;
}
/** An on-device anomaly model (`setScorer`). `score` is called
 *  synchronously on every local write and answers a score, or null when it
 *  does not score that write. A scorer that throws, answers a promise or
 *  anything else leaves the write unscored (audited as `score_failed` with
 *  SCORER_FAILED, SCORER_ASYNC or SCORE_INVALID); the write itself never
 *  fails for it. `model`: a prefix of the model file's SHA-256 (1 to 64
 *  characters of [0-9a-f]), sent with every score. */
export interface Scorer {
  model: string;
  score(input: ScoreInput): { score: number; flagged: boolean } | null;
}
export type OutboxState =
  | { state: "pending" }
  | { state: "dead_letter"; code: ErrorCode; message: string; at_ms: number }
  /** Held for review: not sent, and later writes of the same entity wait
   *  behind it, until `release(seq)` or `discard(seq)`. */
  | { state: "held"; reason: HoldReason; at_ms: number };
export interface OutboxEntry {
  seq: number; mutation: Mutation; state: OutboxState; attempts: number;
  next_attempt_at: number; sent: boolean; last_error: [ErrorCode, string] | null;
  enqueued_at: number;
}
/** An open conflict on an entity of collection `C` with fields `F`. */
export interface ConflictOf<F extends Fields = Fields, C extends string = string> {
  key: EntityKey<C>; base: EntityState<MaybeFields<F>, C> | null; local: LocalEntity<MaybeFields<F>, C> | null;
  server: EntityState<MaybeFields<F>, C> | null; mutations: Mutation[]; fields: string[]; detected_at: number;
}
/** An open conflict in schema `S`, one ConflictOf per collection. TypeScript
 *  does not narrow it on the nested `key.collection`; a type guard does:
 *  `(c): c is ConflictOf<Hotel["rooms"], "rooms"> => c.key.collection === "rooms"`. */
export type ConflictRecord<S extends Schema = Untyped> = { [C in CollectionName<S>]: ConflictOf<S[C], C> }[CollectionName<S>];
/** How a person resolves a conflict; `edited` gives the entity's new fields. */
export type Resolution<F extends Fields = Fields> =
  | { choice: "local" } | { choice: "server" } | { choice: "edited"; fields: F };
export type Phase = "idle" | "syncing" | "offline" | "error";
export interface Status {
  phase: Phase; pending: number; conflicts: number; dead_letters: number;
  /** Writes held for review (not pending: they wait for a person). */
  held: number;
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
/** An event of collections `C` of schema `S` (all of them by default). */
export type SyncEvent<S extends Schema = Untyped, C extends CollectionName<S> = CollectionName<S>> =
  /** One entity's view changed (`entity` null: it is gone; a deleted one has no fields). */
  | { [K in C]: { type: "changed"; key: EntityKey<K>; entity: LocalEntity<MaybeFields<S[K]>, K> | null } }[C]
  /** Several entities of one collection changed in one commit (a pulled page, a bulk retry):
   *  their ids only; read them with get() or query(). One changed entity comes as "changed". */
  | { type: "changes"; collection: C; ids: string[] }
  | { type: "status"; status: Status }
  | { type: "alert"; code: ErrorCode; key: EntityKey; op_id: string | null; message: string };
/** A page of a query: entities with an id after `after`, at most `limit` (default 1000, max 10000). */
export interface PageOptions { after?: string; limit?: number; }
/** A live query (`live()`): one page of a collection, as `query(collection, { after, limit })`. */
export interface LiveQuery<C extends string = string> extends PageOptions { collection: C; }
export type AuditEvent =
  | { event: "queued" } | { event: "applied"; version: number } | { event: "duplicate"; version: number }
  | { event: "rebased"; onto: number } | { event: "superseded"; by_version: number }
  | { event: "conflict_opened" } | { event: "conflict_resolved"; choice: string }
  | { event: "dead_lettered"; code: ErrorCode } | { event: "retried" }
  | { event: "replaced_by"; op_id: string } | { event: "discarded" }
  | { event: "reconciled"; action: string }
  | { event: "scored"; anomaly: AnomalyScore } | { event: "score_failed"; code: string }
  | { event: "held"; reason: HoldReason } | { event: "released" };
export interface AuditEntry {
  seq: number; at_ms: number; op_id: string | null; key: EntityKey; event: AuditEvent;
}
/** {} for everything, { collection } for one collection, { collection, id } for one entity.
 *  The filter narrows `changed` and `changes` events only (a `changes` event passes an entity filter
 *  when its id is among the ids, and arrives whole): `status` and `alert` events reach every subscriber. */
export type SubscriptionFilter<S extends Schema = Untyped, C extends CollectionName<S> = CollectionName<S>> =
  | { collection?: undefined; id?: undefined } | { collection: C; id?: string };

// ---- The browser class. The Node package's copy of this file (node/types.d.ts) ends here. ----
/**
 * An offline-first, encrypted, syncing local database in the browser, typed
 * by schema `S` (`TideSync.open<S>()`; untyped by default). Declared here,
 * not by wasm-bindgen, which cannot write generic methods:
 * node/test/dts-parity.mjs checks that it declares every method the module
 * exports, with the same parameters.
 */
export class TideSync<S extends Schema = Untyped> {
  private constructor();
  /** Frees the Wasm object (wasm-bindgen); `close()` first. */
  free(): void;
  [Symbol.dispose](): void;
  /** Opens (or creates) the local database and joins the tabs that share it. */
  static open<S extends Schema = Untyped>(options: OpenOptions<NoInfer<S>>): Promise<TideSync<S>>;
  /** Creates an entity (`id` defaults to a new ULID). */
  create<C extends CollectionName<S>>(collection: C, fields: S[C], id?: string | null, options?: WriteOptions | null): Promise<LocalEntity<S[C], C>>;
  /** Applies a JSON merge patch (`null` removes a field). */
  patch<C extends CollectionName<S>>(collection: C, id: string, patch: Patch<S[C]>, options?: WriteOptions | null): Promise<LocalEntity<S[C], C>>;
  /** Deletes an entity (the view returned has no fields). */
  delete<C extends CollectionName<S>>(collection: C, id: string, options?: WriteOptions | null): Promise<LocalEntity<MaybeFields<S[C]>, C>>;
  /** Appends to an append-only collection (`id` defaults to a new ULID). */
  append<C extends CollectionName<S>>(collection: C, fields: S[C], id?: string | null, options?: WriteOptions | null): Promise<LocalEntity<S[C], C>>;
  /** One entity's local view, or null (also when deleted). */
  get<C extends CollectionName<S>>(collection: C, id: string): Promise<LocalEntity<S[C], C> | null>;
  /** A page of a collection's live entities, by id; the next page starts after the last id returned. */
  query<C extends CollectionName<S>>(collection: C, options?: PageOptions): Promise<LocalEntity<S[C], C>[]>;
  /** Calls `callback` with the rows of a page query at once, then with the
   *  new rows whenever they change: this tab's writes, pulls, other tabs;
   *  never twice with the same rows. A write to a shown row is applied to
   *  the result without a read; other changes inside the page read it again,
   *  once per burst. A failed read goes to `onError`. Returns the function
   *  that unsubscribes. */
  live<C extends CollectionName<S>>(query: LiveQuery<C>, callback: (rows: LocalEntity<S[C], C>[]) => void, onError?: (error: TideSyncError) => void): () => void;
  /** The sync status. */
  status(): Promise<Status>;
  /** Counters since the engine opened. */
  metrics(): Promise<Metrics>;
  /** Pushes the outbox and pulls changes now. */
  syncNow(): Promise<SyncReport>;
  /** Verifies collections against the server and repairs differences. */
  reconcile(collections?: CollectionName<S>[] | null): Promise<SyncReport>;
  /** Every queued mutation, by seq. */
  outbox(): Promise<OutboxEntry[]>;
  /** Mutations waiting for a person (retry or discard). */
  deadLetters(): Promise<OutboxEntry[]>;
  /** Sets the anomaly scorer of local writes (null: none; a bad scorer is BAD_ARGUMENT). In a browser the leading tab's scorer scores every tab's writes, so each tab sets it. */
  setScorer(scorer: Scorer | null): void;
  /** Writes held for review, by seq. */
  held(): Promise<OutboxEntry[]>;
  /** Releases a held write: it is sent with the next push, in its entity's order (else NOT_FOUND). */
  release(seq: number): Promise<void>;
  /** Sends a dead letter again; with `payload` (null for a delete) it is edited first and sent under a new op id. */
  retry(seq: number, payload?: Fields | null): Promise<void>;
  /** Retries every dead letter; resolves with how many. */
  retryAll(): Promise<number>;
  /** Discards every dead letter (each audited); resolves with how many. */
  discardAll(): Promise<number>;
  /** Local audit entries after `after` (a seq), at most `limit` (default 1000). */
  audit(options?: { after?: number; limit?: number }): Promise<AuditEntry[]>;
  /** Drops a dead letter or a held write (audited); the local view is replayed without it. */
  discard(seq: number): Promise<void>;
  /** Open conflicts. */
  conflicts(): Promise<ConflictRecord<S>[]>;
  /** Resolves an open conflict. */
  resolve<C extends CollectionName<S>>(collection: C, id: string, resolution: Resolution<S[C]>): Promise<void>;
  /** Calls `callback` with every `changed` and `changes` event matching `filter`, and with every status and alert event. Returns the function that unsubscribes. */
  subscribe<C extends CollectionName<S> = CollectionName<S>>(filter: SubscriptionFilter<S, C>, callback: (event: SyncEvent<S, C>) => void): () => void;
  /** Calls `callback` with the current status at once, then with each new status. Returns the function that unsubscribes. */
  onStatus(callback: (status: Status) => void): () => void;
  /** Resolves with the status once a first snapshot has been applied completely (at once if it was, in this or an earlier session); rejects if closed first. */
  waitForFirstSync(): Promise<Status>;
  /** This tab runs the engine and the sync (the others forward to it). */
  isLeader(): boolean;
  /** The terminal and branch the database belongs to, and whether it keeps the key. */
  identity(): Identity;
  /** Closes this tab's connection; another tab takes over the sync. */
  close(): void;
  /** Destroys the local database and its wrapped key: everything not yet synced is lost. Other tabs see `STORE_GONE`. */
  wipe(): Promise<void>;
}
