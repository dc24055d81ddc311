// Service worker of the housekeeping app: caches the app shell so the app
// reloads offline. Network first (a new build shows at once when online),
// the cache when the network fails. The sync API is never cached.
const CACHE = 'hk-shell-v1';
const SHELL = ['./', './index.html', './app.css', './manifest.webmanifest', './icon.svg',
  './dist/app.js', './dist/tidesync_bg.wasm'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});
self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/v1/') || url.pathname === '/health' || url.pathname.startsWith('/__control/')) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(event.request);
      if (res.ok) await cache.put(event.request, res.clone());
      return res;
    } catch (e) {
      const hit = await cache.match(event.request, { ignoreSearch: true });
      if (hit) return hit;
      throw e;
    }
  })());
});
