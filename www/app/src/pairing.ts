// Pairing: a link printed by the main job carries a one-time pairing code in
// its fragment (never sent to a server as part of the URL):
// #pair=<base64url of JSON {code, staff?}>. The app hands the code to
// TideSync.open once: the package redeems it at the server for the
// terminal's API key (POST /v1/pair), learns the terminal and branch with
// it, and keeps the key inside the encrypted store, sealed like its records.
// The link stays in the browser's history, but a used code is worth nothing.
// The app itself keeps no key, no code and no ids; nothing goes to
// localStorage, and the fragment is removed from the address bar. Only the
// demo's staff name (who uses the tablet, not a secret) is kept here, in the
// app's own small IndexedDB. A link with `apiKey` instead of `code` works too.
export interface PairingLink { code?: string; apiKey?: string; staff?: string; terminal?: string; branch?: string }

const PREFS = 'hk-prefs';

export function pairingFromHash(hash: string): PairingLink | null {
  const m = /(?:^#|&)pair=([A-Za-z0-9_-]+)/.exec(hash);
  if (!m) return null;
  const b64 = m[1].replace(/-/g, '+').replace(/_/g, '/');
  const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  const p = JSON.parse(json) as Partial<PairingLink>;
  const out: PairingLink = {};
  // Links may also name the terminal and branch: they are checked against the key.
  for (const f of ['code', 'apiKey', 'staff', 'terminal', 'branch'] as const) if (typeof p[f] === 'string' && p[f] !== '') out[f] = p[f];
  if (!out.code === !out.apiKey) throw new Error('a pairing link holds a pairing code or a key, one of them');
  return out;
}

function idb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(PREFS, 1);
    r.onupgradeneeded = () => r.result.createObjectStore('kv');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
}

/** The staff name this tablet was paired for (not a secret). */
export async function saveStaff(staff: string): Promise<void> {
  const db = await idb();
  await req(db.transaction('kv', 'readwrite').objectStore('kv').put(staff, 'staff'));
  db.close();
}

export async function loadStaff(): Promise<string | null> {
  const db = await idb();
  const v = await req(db.transaction('kv').objectStore('kv').get('staff')) as string | undefined;
  db.close();
  return v ?? null;
}

/** The link for a terminal's pairing code. */
export function pairingLink(base: string, p: PairingLink): string {
  const b64 = btoa(JSON.stringify(p)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${base}#pair=${b64}`;
}
