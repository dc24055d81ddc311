// Pairing: a link printed by the main job carries a terminal's API key in its
// fragment (never sent to a server): #pair=<base64url of JSON>. The app keeps
// it in IndexedDB sealed with AES-GCM under a non-extractable WebCrypto key
// (the same protection as the store's `webCrypto` key mode); it is never
// written to localStorage, and the fragment is removed from the address bar.
export interface Pairing { apiKey: string; terminal: string; branch: string; staff?: string }

const DB = 'hk-pairing';

export function pairingFromHash(hash: string): Pairing | null {
  const m = /(?:^#|&)pair=([A-Za-z0-9_-]+)/.exec(hash);
  if (!m) return null;
  const b64 = m[1].replace(/-/g, '+').replace(/_/g, '/');
  const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  const p = JSON.parse(json) as Partial<Pairing>;
  if (typeof p.apiKey !== 'string' || typeof p.terminal !== 'string' || typeof p.branch !== 'string') {
    throw new Error('the pairing link lacks apiKey, terminal or branch');
  }
  return { apiKey: p.apiKey, terminal: p.terminal, branch: p.branch, ...(typeof p.staff === 'string' ? { staff: p.staff } : {}) };
}

function idb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore('kv');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
}

async function wrapKey(db: IDBDatabase): Promise<CryptoKey> {
  const found = await req(db.transaction('kv').objectStore('kv').get('wrap')) as CryptoKey | undefined;
  if (found) return found;
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  await req(db.transaction('kv', 'readwrite').objectStore('kv').put(key, 'wrap'));
  return key;
}

export async function savePairing(p: Pairing): Promise<void> {
  const db = await idb();
  const key = await wrapKey(db);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, new TextEncoder().encode(JSON.stringify(p)));
  await req(db.transaction('kv', 'readwrite').objectStore('kv').put({ iv, ct }, 'pairing'));
  db.close();
}

export async function loadPairing(): Promise<Pairing | null> {
  const db = await idb();
  const sealed = await req(db.transaction('kv').objectStore('kv').get('pairing')) as { iv: Uint8Array<ArrayBuffer>; ct: ArrayBuffer } | undefined;
  if (!sealed) { db.close(); return null; }
  const key = await wrapKey(db);
  db.close();
  const pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv }, key, sealed.ct);
  return JSON.parse(new TextDecoder().decode(pt)) as Pairing;
}

/** The link for a terminal (used by scripts/pairing-links.mjs too). */
export function pairingLink(base: string, p: Pairing): string {
  const b64 = btoa(JSON.stringify(p)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${base}#pair=${b64}`;
}
