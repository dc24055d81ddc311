// Pairing: a link printed by the main job carries a terminal's API key in its
// fragment (never sent to a server): #pair=<base64url of JSON {apiKey, staff?}>.
// The app hands the key to TideSync.open once: the package asks the server
// which terminal and branch the key belongs to and keeps the key inside the
// encrypted store, sealed like its records. The app itself keeps no key and
// no ids, nothing goes to localStorage, and the fragment is removed from the
// address bar. Only the demo's staff name (who uses the tablet, not a secret)
// is kept here, in the app's own small IndexedDB.
export interface PairingLink { apiKey: string; staff?: string; terminal?: string; branch?: string }

const PREFS = 'hk-prefs';

export function pairingFromHash(hash: string): PairingLink | null {
  const m = /(?:^#|&)pair=([A-Za-z0-9_-]+)/.exec(hash);
  if (!m) return null;
  const b64 = m[1].replace(/-/g, '+').replace(/_/g, '/');
  const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  const p = JSON.parse(json) as Partial<PairingLink>;
  if (typeof p.apiKey !== 'string' || p.apiKey === '') throw new Error('the pairing link holds no apiKey');
  const out: PairingLink = { apiKey: p.apiKey };
  // Older links also named the terminal and branch: they are checked against the key.
  for (const f of ['staff', 'terminal', 'branch'] as const) if (typeof p[f] === 'string') out[f] = p[f];
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

/** The link for a terminal's key. */
export function pairingLink(base: string, p: PairingLink): string {
  const b64 = btoa(JSON.stringify(p)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${base}#pair=${b64}`;
}
