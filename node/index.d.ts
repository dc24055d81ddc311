// tidesync for Node and Electron's main process: the same API and types as
// the browser package (pkg/tidesync.d.ts). The shared types (types.d.ts) are
// the browser package's own file (src/web/tidesync.d.ts) without its browser
// class, copied by node/build.sh; node/test/dts-parity.mjs (run by
// scripts/test-web.sh) checks this class against the browser package's
// class, member by member.
import type {
  AuditEntry, CollectionName, ConflictRecord, ConflictPolicy, ErrorCode, FieldMigration, Fields, Identity, KeyMaterial,
  LiveQuery, LocalEntity, MaybeFields, Metrics, OutboxEntry, PageOptions, Patch, Resolution, RetryOptions, ReviewPolicy, Rules, Schema, Scorer, Status,
  SubscriptionFilter, SyncEvent, SyncReport, Untyped, WriteOptions,
} from "./types";
export * from "./types";

/** Loads an allow-listed ONNX anomaly model with tract, natively (the
 *  addon's `inference` feature): `model` the .onnx bytes, `features` the
 *  text of its anomaly.features.json, `sha256` the SHA-256s allowed. The
 *  Scorer it returns goes to `setScorer()`; its writes are scored without
 *  JS. Throws MODEL_MISSING (no bytes, or no model runtime in this build),
 *  MODEL_NOT_ALLOWED or MODEL_CORRUPT; nothing else changes. */
export declare function loadModel(options: { model: Uint8Array; features: string; sha256: string[] }): Scorer;

/** Key material of a native store: the browser's without `webCrypto`, or
 *  a host key kept by the OS keychain (Secret Service, Keychain, Credential
 *  Manager) under `service` (default "tidesync") and `account` (default the
 *  store's path), created with the store. */
export type NodeKeyMaterial =
  | Exclude<KeyMaterial, { webCrypto: true }>
  | { keychain: true | { service?: string; account?: string } };

/** Options of `TideSync.open<S>()`, for schema `S` (untyped by default). */
export interface NodeOpenOptions<S extends Schema = Untyped> {
  /** The SQLCipher file (created if missing; its wrapped key is `<path>.key`). */
  path: string;
  key: NodeKeyMaterial;
  /** Base URL of the sync server, e.g. "http://127.0.0.1:8080". */
  serverUrl: string;
  /** The terminal's API key. As in the browser package: opening a new
   *  store with the key alone pairs it (its terminal and branch come from
   *  the server, `GET /v1/whoami`), and an encrypted store keeps the key so
   *  that later opens need neither, offline too; a key of another terminal
   *  or branch is `TERMINAL_MISMATCH` at open when the server answers (else
   *  at the next open that reaches it). A `credentials` callback does not
   *  pair. Without any key (and without `credentials`), a store that knows
   *  its terminal opens and works offline, and sync reports
   *  SYNC_UNAUTHORIZED ("no credentials") until a key is given. */
  apiKey?: string;
  /** A one-time pairing code instead of `apiKey`, as in the browser
   *  package: redeemed once at the server for the key, which the store keeps
   *  (BAD_ARGUMENT with `apiKey`, `rememberKey: false` or a plaintext store). */
  pairingCode?: string;
  /** Keep `apiKey` in the store (default true; only an encrypted store
   *  keeps it). `false` also removes a key kept before. */
  rememberKey?: boolean;
  /**
   * Gives the current API key (or a promise of it; null or undefined: none
   * yet), so the key can be refreshed or rotated without reopening, as in
   * the browser package. Called before a request when no key is held, and
   * again after a 401 (once per request: if it gives another key the
   * request is retried, else the 401 stands). With `apiKey` (or a key the
   * store keeps) too, that key is used first. One that throws or rejects is
   * SYNC_UNAUTHORIZED with its message. After a SYNC_UNAUTHORIZED,
   * `syncNow()` asks it again and resumes at once if the key changed. Its
   * keys are not kept in the store.
   */
  credentials?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Optional once the store was opened, or paired by its key, once. */
  terminalId?: string;
  branchId?: string;
  /** The conflict policy of each collection. */
  policies?: { [C in CollectionName<S>]?: ConflictPolicy };
  /** What each collection does with a write its anomaly scorer flags
   *  (default "record"; "hold_flagged" holds it for review). */
  review?: { [C in CollectionName<S>]?: ReviewPolicy };
  /** The server's rules file (the same JSON), checked before a write is
   *  queued, as in the browser package: a write it would refuse (a field of
   *  the wrong type, a missing required field, an unknown field where
   *  `additional_fields` is false, a value outside `enum`/`min`/`max`/`max_len`)
   *  is EVENT_INVALID naming the field, and never queued; a write to a
   *  `read_only` collection, or a create/patch/delete of an `append_only`
   *  one, is POLICY_VIOLATION. Without it, the server's verdict comes back
   *  as a dead letter. */
  rules?: Rules;
  /** Sync in the background (default true). */
  autoSync?: boolean;
  /** How often to pull when idle (ms, default 30000). */
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

/** What every rejected promise and thrown error of this package is. */
export declare class TideSyncError extends Error {
  readonly code: ErrorCode;
}

/**
 * An offline-first, encrypted (SQLCipher), syncing local database, typed by
 * schema `S` (`TideSync.open<S>()`; untyped by default), as the browser
 * package's.
 */
export declare class TideSync<S extends Schema = Untyped> {
  private constructor();
  /** Opens (or creates) the local database and starts its sync. */
  static open<S extends Schema = Untyped>(options: NodeOpenOptions<NoInfer<S>>): Promise<TideSync<S>>;
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
  /** The sync status. */
  /** As in the browser package: the rows of a page query at once, then
   *  whenever they change; the result is kept by the core. */
  live<C extends CollectionName<S>>(query: LiveQuery<C>, callback: (rows: LocalEntity<S[C], C>[]) => void, onError?: (error: TideSyncError) => void): () => void;
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
  /** Sets the anomaly scorer of local writes (null: none; a bad scorer is BAD_ARGUMENT). `score` runs on the JS thread while the write waits; no answer within 5 s is SCORER_TIMEOUT (the write goes on unscored). */
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
  /** Calls `callback` with the current status at once, then with each new status. */
  onStatus(callback: (status: Status) => void): () => void;
  /** Resolves with the status once a first snapshot has been applied completely. */
  waitForFirstSync(): Promise<Status>;
  /** This process runs the engine and the sync (always true until closed). */
  isLeader(): boolean;
  /** Node only: tells the engine whether the host is online (e.g. Electron's `net.isOnline()`). */
  setOnline(online: boolean): Promise<void>;
  /** The terminal and branch the store belongs to, and whether it keeps the key. */
  identity(): Identity;
  /** Stops the sync and closes the database. */
  close(): void;
  /** Destroys the local database and its wrapped key: everything not yet synced is lost. */
  wipe(): Promise<void>;
}
