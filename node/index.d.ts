// tidesync for Node and Electron's main process: the same API and types as
// the browser package (pkg/tidesync.d.ts). The shared types (types.d.ts) are
// the browser package's own file (src/web/tidesync.d.ts), copied by
// node/build.sh; node/test/dts-parity.mjs (run by scripts/test-web.sh)
// checks this class against the browser package's class, member by member.
import type {
  AuditEntry, ConflictRecord, ConflictPolicy, ErrorCode, FieldMigration, Fields, Identity, KeyMaterial, LocalEntity,
  Metrics, OutboxEntry, PageOptions, Resolution, Status, SubscriptionFilter, SyncEvent,
  SyncReport,
} from "./types";
export * from "./types";

/** Key material of a native store: the browser's without `webCrypto`, or
 *  a host key kept by the OS keychain (Secret Service, Keychain, Credential
 *  Manager) under `service` (default "tidesync") and `account` (default the
 *  store's path), created with the store. */
export type NodeKeyMaterial =
  | Exclude<KeyMaterial, { webCrypto: true }>
  | { keychain: true | { service?: string; account?: string } };

export interface NodeOpenOptions {
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
   *  at the next open that reaches it). The browser package's
   *  `credentials` callback is not in the Node addon yet; to rotate a key,
   *  close and open again with the new one. */
  apiKey?: string;
  /** A one-time pairing code instead of `apiKey`, as in the browser
   *  package: redeemed once at the server for the key, which the store keeps
   *  (BAD_ARGUMENT with `apiKey`, `rememberKey: false` or a plaintext store). */
  pairingCode?: string;
  /** Keep `apiKey` in the store (default true; only an encrypted store
   *  keeps it). `false` also removes a key kept before. */
  rememberKey?: boolean;
  /** Optional once the store was opened, or paired by its key, once. */
  terminalId?: string;
  branchId?: string;
  policies?: { [collection: string]: ConflictPolicy };
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
  /** The app's payload schema version (default 1). Raising it runs `migrations` on queued mutations. */
  schemaVersion?: number;
  /** Steps that carry queued mutations from older schema versions forward. */
  migrations?: FieldMigration[];
}

/** What every rejected promise and thrown error of this package is. */
export declare class TideSyncError extends Error {
  readonly code: ErrorCode;
}

/** An offline-first, encrypted (SQLCipher), syncing local database. */
export declare class TideSync {
  private constructor();
  /** Opens (or creates) the local database and starts its sync. */
  static open(options: NodeOpenOptions): Promise<TideSync>;
  /** Creates an entity (`id` defaults to a new ULID). */
  create(collection: string, fields: Fields, id?: string | null): Promise<LocalEntity>;
  /** Applies a JSON merge patch (`null` removes a field). */
  patch(collection: string, id: string, patch: Fields): Promise<LocalEntity>;
  /** Deletes an entity. */
  delete(collection: string, id: string): Promise<LocalEntity>;
  /** Appends to an append-only collection (`id` defaults to a new ULID). */
  append(collection: string, fields: Fields, id?: string | null): Promise<LocalEntity>;
  /** One entity's local view, or null. */
  get(collection: string, id: string): Promise<LocalEntity | null>;
  /** A page of a collection's live entities, by id; the next page starts after the last id returned. */
  query(collection: string, options?: PageOptions): Promise<LocalEntity[]>;
  /** The sync status. */
  status(): Promise<Status>;
  /** Counters since the engine opened. */
  metrics(): Promise<Metrics>;
  /** Pushes the outbox and pulls changes now. */
  syncNow(): Promise<SyncReport>;
  /** Verifies collections against the server and repairs differences. */
  reconcile(collections?: string[] | null): Promise<SyncReport>;
  /** Every queued mutation, by seq. */
  outbox(): Promise<OutboxEntry[]>;
  /** Mutations waiting for a person (retry or discard). */
  deadLetters(): Promise<OutboxEntry[]>;
  /** Sends a dead letter again; with `payload` (null for a delete) it is edited first and sent under a new op id. */
  retry(seq: number, payload?: Fields | null): Promise<void>;
  /** Retries every dead letter; resolves with how many. */
  retryAll(): Promise<number>;
  /** Discards every dead letter (each audited); resolves with how many. */
  discardAll(): Promise<number>;
  /** Local audit entries after `after` (a seq), at most `limit` (default 1000). */
  audit(options?: { after?: number; limit?: number }): Promise<AuditEntry[]>;
  /** Drops a dead letter (audited). */
  discard(seq: number): Promise<void>;
  /** Open conflicts. */
  conflicts(): Promise<ConflictRecord[]>;
  /** Resolves an open conflict. */
  resolve(collection: string, id: string, resolution: Resolution): Promise<void>;
  /** Calls `callback` with every `changed` and `changes` event matching `filter`, and with every status and alert event. Returns the function that unsubscribes. */
  subscribe(filter: SubscriptionFilter, callback: (event: SyncEvent) => void): () => void;
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
