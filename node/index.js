'use strict';
// tidesync for Node and Electron's main process: the same API as the
// browser package (see index.d.ts), over the native addon (tidesync.node:
// the core's engine on a SQLCipher file). Everything here is translation:
// arguments are checked and turned into the core's commands (JSON), events
// are dispatched to subscribers, errors become TideSyncError with the core's
// stable codes.

const path = require('node:path');

function loadAddon() {
  const file = process.env.TIDESYNC_NODE_ADDON || path.join(__dirname, 'tidesync.node');
  try {
    return require(file);
  } catch (e) {
    throw new Error(`tidesync: the native addon ${file} could not be loaded (build it with node/build.sh): ${e.message}`);
  }
}

const { NativeClient, LiveView, NativeModel } = loadAddon();

/** The native model behind a scorer of `loadModel()`. */
const NATIVE = Symbol('tidesync.nativeModel');

/** The error every rejected promise of this package carries. */
class TideSyncError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'TideSyncError';
    this.code = code;
  }
}

function badArgument(message) {
  return new TideSyncError('BAD_ARGUMENT', message);
}

/** A native error ({"code","message"} as its message) as a TideSyncError. */
function translate(e) {
  if (e instanceof TideSyncError) return e;
  try {
    const body = JSON.parse(e.message);
    if (body && typeof body.code === 'string') return new TideSyncError(body.code, String(body.message ?? ''));
  } catch { /* not one of ours */ }
  return new TideSyncError(e && e.code === 'InvalidArg' ? 'BAD_ARGUMENT' : 'INTERNAL', String(e && e.message));
}

const MAX_DEPTH = 64;

/** `v` checked to be JSON, as the browser package checks it: a Date, Map,
 *  undefined, NaN, bigint, function or cycle is BAD_ARGUMENT naming its path
 *  (JSON.stringify would silently store something else). */
function checkJson(v, where, ancestors = []) {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw badArgument(`${where}: a number that is not finite (NaN, Infinity) is not JSON`);
    return;
  }
  if (v === undefined) throw badArgument(`${where}: undefined is not JSON`);
  if (typeof v === 'bigint') throw badArgument(`${where}: a bigint is not JSON`);
  if (typeof v === 'symbol') throw badArgument(`${where}: a symbol is not JSON`);
  if (typeof v === 'function') throw badArgument(`${where}: a function is not JSON`);
  if (ancestors.includes(v)) throw badArgument(`${where}: a cycle is not JSON`);
  if (ancestors.length >= MAX_DEPTH) throw badArgument(`${where}: nested deeper than ${MAX_DEPTH} levels`);
  ancestors.push(v);
  if (Array.isArray(v)) {
    v.forEach((item, i) => checkJson(item, `${where}[${i}]`, ancestors));
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== null && proto !== Object.prototype) {
      throw badArgument(`${where}: a ${(v.constructor && v.constructor.name) || 'object'} is not JSON`);
    }
    for (const k of Object.keys(v)) checkJson(v[k], `${where}.${k}`, ancestors);
  }
  ancestors.pop();
}

function fields(v, where) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw badArgument(`${where} must be an object`);
  checkJson(v, where);
  return v;
}

// A write's options: `{hold?: boolean}`, undefined or null for none.
function writeOptions(v) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw badArgument('options must be an object');
  const out = {};
  for (const [k, value] of Object.entries(v)) {
    if (value === undefined) continue;
    if (k !== 'hold') throw badArgument(`options: unknown option \`${k}\`, expected \`hold\``);
    if (typeof value !== 'boolean') throw badArgument('options.hold must be a boolean');
    out.hold = value;
  }
  return out;
}

function str(v, where) {
  if (typeof v !== 'string') throw badArgument(`${where} must be a string`);
  return v;
}

function seq(v) {
  if (!Number.isSafeInteger(v) || v < 1) throw badArgument(`seq must be a positive integer, not ${v}`);
  return v;
}

function keyArgs(key, dbPath) {
  if (key === null || typeof key !== 'object') throw badArgument('options.key must be an object');
  if (typeof key.passphrase === 'string') return ['passphrase', Buffer.from(key.passphrase, 'utf8')];
  if (key.hostKey instanceof Uint8Array) return ['hostKey', Buffer.from(key.hostKey)];
  if (key.plaintext === true) return ['plaintext', null];
  if (key.keychain !== undefined) {
    const k = key.keychain === true ? {} : key.keychain;
    if (k === null || typeof k !== 'object') throw badArgument('options.key.keychain must be true or {service, account}');
    const service = k.service ?? 'tidesync';
    const account = k.account ?? path.resolve(dbPath);
    if (typeof service !== 'string' || service === '' || typeof account !== 'string' || account === '') {
      throw badArgument('options.key.keychain: service and account must be non-empty strings');
    }
    return ['keychain', Buffer.from(JSON.stringify({ service, account }), 'utf8')];
  }
  throw badArgument('options.key must be {passphrase}, {hostKey}, {keychain} or {plaintext: true}');
}

/** What a thrown or rejected value says (its message, else itself). */
function describe(e) {
  if (e && typeof e.message === 'string') return e.message;
  try { return String(e); } catch { return 'a value that cannot be shown'; }
}

/** The `credentials` option as the addon calls it: never throws nor
 *  rejects, resolves with `{"key"}` (a string, or null for none yet) or
 *  `{"error"}` (what went wrong, as the browser package says it). The key
 *  goes to the addon only; nothing here logs it. */
function credentialsArg(credentials) {
  if (credentials === undefined || credentials === null) return null;
  if (typeof credentials !== 'function') {
    throw badArgument('options.credentials must be a function giving the API key (or a promise of it)');
  }
  return async () => {
    let v;
    try { v = credentials(); } catch (e) { return JSON.stringify({ error: `threw: ${describe(e)}` }); }
    try { v = await v; } catch (e) { return JSON.stringify({ error: `rejected: ${describe(e)}` }); }
    if (v === null || v === undefined) return JSON.stringify({ key: null });
    if (typeof v !== 'string') return JSON.stringify({ error: 'must give a string (the API key), null or undefined' });
    return JSON.stringify({ key: v });
  };
}

function matches(filter, event) {
  if (event.type === 'changes') {
    if (filter.collection !== undefined && event.collection !== filter.collection) return false;
    return filter.id === undefined || event.ids.includes(filter.id);
  }
  if (event.type !== 'changed') return true;
  if (filter.collection !== undefined && event.key.collection !== filter.collection) return false;
  if (filter.id !== undefined && event.key.id !== filter.id) return false;
  return true;
}

/** An offline-first, encrypted, syncing local database (SQLCipher). */
class TideSync {
  /** @param {import('./index').NodeOpenOptions} options */
  static async open(options) {
    if (options === null || typeof options !== 'object') throw badArgument('options must be an object');
    const { key, credentials, ...rest } = options;
    if (typeof rest.path !== 'string' || rest.path === '') throw badArgument('options.path must be a non-empty string');
    const ask = credentialsArg(credentials);
    const [kind, bytes] = keyArgs(key, rest.path);
    const listeners = new Set();
    const dispatch = (json) => {
      if (listeners.size === 0) return;
      let events;
      try { events = JSON.parse(json); } catch { return; }
      for (const event of events) {
        for (const l of [...listeners]) {
          if (!l.status ? matches(l.filter, event) : event.type === 'status') {
            try { l.callback(l.status ? event.status : event); } catch (e) { console.error('tidesync: a subscriber threw', e); }
          }
        }
      }
    };
    let native;
    try {
      native = await NativeClient.open(JSON.stringify(rest), kind, bytes, dispatch, ask);
    } catch (e) {
      throw translate(e);
    } finally {
      if (bytes) bytes.fill(0);
    }
    return new TideSync(native, listeners);
  }

  constructor(native, listeners) {
    if (!(native instanceof NativeClient)) throw new TypeError('use TideSync.open(options)');
    this._native = native;
    this._listeners = listeners;
    this._closed = false;
  }

  async _run(command) {
    let answer;
    try {
      answer = await this._native.call(JSON.stringify(command));
    } catch (e) {
      throw translate(e);
    }
    return JSON.parse(answer);
  }

  create(collection, fieldsValue, id, options) {
    return this._call(() => ({ op: 'create', collection: str(collection, 'collection'), fields: fields(fieldsValue, 'fields'), id: id === undefined || id === null ? null : str(id, 'id'), options: writeOptions(options) }));
  }
  patch(collection, id, patchValue, options) {
    return this._call(() => ({ op: 'patch', collection: str(collection, 'collection'), id: str(id, 'id'), patch: fields(patchValue, 'patch'), options: writeOptions(options) }));
  }
  delete(collection, id, options) {
    return this._call(() => ({ op: 'delete', collection: str(collection, 'collection'), id: str(id, 'id'), options: writeOptions(options) }));
  }
  append(collection, fieldsValue, id, options) {
    return this._call(() => ({ op: 'append', collection: str(collection, 'collection'), fields: fields(fieldsValue, 'fields'), id: id === undefined || id === null ? null : str(id, 'id'), options: writeOptions(options) }));
  }
  get(collection, id) {
    return this._call(() => ({ op: 'get', collection: str(collection, 'collection'), id: str(id, 'id') }));
  }
  query(collection, options = {}) {
    return this._call(() => {
      if (options === null || typeof options !== 'object') throw badArgument('options must be an object');
      const { after, limit } = options;
      if (after !== undefined && typeof after !== 'string') throw badArgument('options.after must be a string');
      if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw badArgument('options.limit must be a non-negative integer');
      return { op: 'query', collection: str(collection, 'collection'), after: after ?? null, limit: limit ?? null };
    });
  }
  status() { return this._call(() => ({ op: 'status' })); }
  metrics() { return this._call(() => ({ op: 'metrics' })); }
  syncNow() { return this._call(() => ({ op: 'sync_now' })); }
  reconcile(collections) {
    return this._call(() => {
      if (collections != null && !(Array.isArray(collections) && collections.every((c) => typeof c === 'string'))) {
        throw badArgument('collections must be an array of strings');
      }
      return { op: 'reconcile', collections: collections ?? null };
    });
  }
  outbox() { return this._call(() => ({ op: 'outbox' })); }
  deadLetters() { return this._call(() => ({ op: 'dead_letters' })); }
  held() { return this._call(() => ({ op: 'held' })); }
  async release(seqValue) { await this._call(() => ({ op: 'release', seq: seq(seqValue) })); }
  async retry(seqValue, ...payload) {
    const edited = payload.length > 0 && payload[0] !== undefined;
    await this._call(() => edited
      ? { op: 'retry_edited', seq: seq(seqValue), payload: payload[0] === null ? null : fields(payload[0], 'payload') }
      : { op: 'retry', seq: seq(seqValue) });
  }
  retryAll() { return this._call(() => ({ op: 'retry_all' })); }
  discardAll() { return this._call(() => ({ op: 'discard_all' })); }
  audit(options = {}) {
    return this._call(() => {
      if (options === null || typeof options !== 'object') throw badArgument('options must be an object');
      const { after, limit } = options;
      if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) throw badArgument('options.after must be a non-negative integer');
      if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw badArgument('options.limit must be a non-negative integer');
      return { op: 'audit', after: after ?? 0, limit: limit ?? null };
    });
  }
  async discard(seqValue) { await this._call(() => ({ op: 'discard', seq: seq(seqValue) })); }
  conflicts() { return this._call(() => ({ op: 'conflicts' })); }
  async resolve(collection, id, resolution) {
    await this._call(() => {
      if (resolution === null || typeof resolution !== 'object') throw badArgument('resolution must be an object');
      checkJson(resolution, 'resolution');
      return { op: 'resolve', collection: str(collection, 'collection'), id: str(id, 'id'), resolution };
    });
  }

  /** Runs `build` (which may throw BAD_ARGUMENT) and sends its command. */
  async _call(build) {
    if (this._closed) throw new TideSyncError('INVALID_STATE', 'this TideSync is closed');
    return this._run(build());
  }

  subscribe(filter, callback) {
    if (filter === null || typeof filter !== 'object') throw badArgument('filter must be an object');
    if (typeof callback !== 'function') throw badArgument('callback must be a function');
    if (filter.id !== undefined && filter.collection === undefined) throw badArgument('filter.id needs filter.collection');
    const l = { filter: { collection: filter.collection, id: filter.id }, callback, status: false };
    this._listeners.add(l);
    return () => { this._listeners.delete(l); };
  }

  /** A live page query: the core keeps the result (LiveView); this runs
   *  the loop, as the browser package's binding does. */
  live(query, callback, onError) {
    if (typeof callback !== 'function') throw badArgument('callback must be a function');
    if (onError !== undefined && typeof onError !== 'function') throw badArgument('onError must be a function');
    if (query === null || typeof query !== 'object') throw badArgument('query must be an object');
    let view;
    try { view = new LiveView(JSON.stringify(query)); } catch (e) { throw translate(e); }
    let reading = false, again = false, closed = false;
    const deliver = () => {
      try { callback(JSON.parse(view.rows())); } catch (e) { console.error('tidesync: a live query callback threw', e); }
    };
    const read = async () => {
      if (reading) { again = true; return; }
      reading = true;
      try {
        do {
          again = false;
          let page;
          try {
            page = await this._native.call(view.read());
          } catch (e) {
            if (!closed && onError) onError(translate(e));
            return;
          }
          if (closed) return;
          if (view.set(page)) deliver(); // the result kept is the one delivered
        } while (again);
      } finally {
        reading = false;
      }
    };
    const l = {
      filter: { collection: query.collection }, status: false,
      callback: (event) => {
        if (closed) return;
        const json = JSON.stringify(event);
        if (reading) { if (view.touches(json)) again = true; return; }
        const update = view.apply(json);
        if (update === 'changed') deliver();
        else if (update === 'requery') read();
      },
    };
    this._listeners.add(l);
    read();
    return () => { closed = true; this._listeners.delete(l); };
  }

  onStatus(callback) {
    if (typeof callback !== 'function') throw badArgument('callback must be a function');
    const l = { filter: {}, callback, status: true };
    this._listeners.add(l);
    this.status().then((s) => { if (this._listeners.has(l)) callback(s); }, () => {});
    return () => { this._listeners.delete(l); };
  }

  async waitForFirstSync() {
    for (;;) {
      const s = await this.status();
      if (s.first_sync_done) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The one process that opened the file runs the engine and the sync. */
  isLeader() { return !this._closed; }

  /** Tells the engine whether the host is online (e.g. Electron's net.isOnline()). */
  async setOnline(online) {
    if (typeof online !== 'boolean') throw badArgument('online must be a boolean');
    if (this._closed) throw new TideSyncError('INVALID_STATE', 'this TideSync is closed');
    try { await this._native.setOnline(online); } catch (e) { throw translate(e); }
  }

  setScorer(scorer) {
    if (scorer === null || scorer === undefined) { this._native.setScorer(null, null); return; }
    if (scorer && scorer[NATIVE]) {
      // A tract model of loadModel(): scored natively, no JS on the write path.
      try { this._native.setNativeScorer(scorer[NATIVE]); } catch (e) { throw translate(e); }
      return;
    }
    if (typeof scorer !== 'object' || typeof scorer.score !== 'function') throw badArgument('scorer must be {model, score(input)} or null');
    if (typeof scorer.model !== 'string' || !/^[0-9a-f]{1,64}$/.test(scorer.model)) {
      throw badArgument("scorer.model must be 1 to 64 characters of [0-9a-f] (a prefix of the model's SHA-256)");
    }
    // Called on this thread with the write as JSON; answers JSON. What the
    // scorer threw is not passed on (it may hold field data).
    const score = (json) => {
      let out;
      try { out = scorer.score(JSON.parse(json)); } catch { return '{"error":"SCORER_FAILED"}'; }
      if (out && typeof out.then === 'function') return '{"error":"SCORER_ASYNC"}';
      try { return JSON.stringify(out === undefined ? null : out); } catch { return '{"error":"SCORER_FAILED"}'; }
    };
    try { this._native.setScorer(scorer.model, score); } catch (e) { throw translate(e); }
  }
  identity() {
    return JSON.parse(this._native.identity());
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this._listeners.clear();
    this._native.close();
  }

  /** Destroys the local database and its wrapped key: everything not yet synced is lost. */
  async wipe() {
    this._closed = true;
    this._listeners.clear();
    try { await this._native.wipe(); } catch (e) { throw translate(e); }
  }
}

/**
 * Loads an allow-listed ONNX anomaly model with tract (the addon's
 * `inference` feature): `model` the .onnx bytes, `features` the text of its
 * anomaly.features.json, `sha256` the SHA-256s allowed. Returns a Scorer
 * for `setScorer()`, scored natively. MODEL_MISSING (no bytes, or an addon
 * built without the feature), MODEL_NOT_ALLOWED, MODEL_CORRUPT.
 */
function loadModel(options) {
  if (options === null || typeof options !== 'object') throw badArgument('options must be {model, features, sha256}');
  const { model, features, sha256 } = options;
  if (!(model instanceof Uint8Array)) throw badArgument('options.model must be the model file\'s bytes (a Uint8Array)');
  if (typeof features !== 'string') throw badArgument('options.features must be the text of the model\'s features file');
  if (!Array.isArray(sha256) || !sha256.every((s) => typeof s === 'string')) throw badArgument('options.sha256 must be the allowed SHA-256s (strings)');
  if (!NativeModel) throw new TideSyncError('MODEL_MISSING', 'this build of the addon has no model runtime (build it with the cargo feature `inference`)');
  let native;
  try { native = NativeModel.load(Buffer.from(model.buffer, model.byteOffset, model.byteLength), features, sha256); } catch (e) { throw translate(e); }
  return Object.freeze({
    model: native.model,
    score(input) {
      checkJson(input, 'input');
      try { return JSON.parse(native.score(JSON.stringify(input))); } catch (e) { throw translate(e); }
    },
    [NATIVE]: native,
  });
}

module.exports = { TideSync, TideSyncError, loadModel };
