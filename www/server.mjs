// A tiny static server for the browser tests and benchmarks: serves the
// repository (pkg/, www/, bench/web/) with cross-origin isolation (precise
// performance.now()), and proxies the sync API (/v1/*, /health) to the sync
// server so pages talk to it on their own origin (no CORS).
//
// Test controls (only for tests):
//   POST /__control/offline?on=1|0       the proxy drops every sync request
//   POST /__control/drop-push-response   the next push reaches the server but
//                                        its response is lost (a retry follows)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain',
  '.css': 'text/css', '.svg': 'image/svg+xml', '.webmanifest': 'application/manifest+json',
};

export function startStaticServer({ root, upstream = null, port = 0 }) {
  let offline = false;
  let dropNextPushResponse = false;
  const stats = { pushes: 0, proxied: 0 };
  // Open live streams (GET /v1/events): cut when the proxy goes offline.
  const streams = new Set();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/__control/')) {
      if (url.pathname === '/__control/offline') {
        offline = url.searchParams.get('on') === '1';
        if (offline) for (const socket of streams) socket.destroy();
      }
      if (url.pathname === '/__control/drop-push-response') dropNextPushResponse = true;
      res.writeHead(204).end();
      return;
    }
    if (url.pathname.startsWith('/v1/') || url.pathname === '/health') {
      if (offline || !upstream) { req.socket.destroy(); return; }
      stats.proxied++;
      const isPush = url.pathname === '/v1/mutations';
      if (isPush) stats.pushes++;
      if (url.pathname === '/v1/events') {
        const socket = req.socket;
        streams.add(socket);
        socket.once('close', () => streams.delete(socket));
      }
      const drop = isPush && dropNextPushResponse;
      if (drop) dropNextPushResponse = false;
      const up = new URL(upstream);
      const preq = http.request({
        host: up.hostname, port: up.port, path: req.url, method: req.method,
        headers: { ...req.headers, host: up.host },
      }, (pres) => {
        if (drop) {
          // The server processed the push; the answer never arrives.
          pres.resume();
          pres.on('end', () => req.socket.destroy());
          return;
        }
        res.writeHead(pres.statusCode, pres.headers);
        pres.pipe(res);
      });
      preq.on('error', () => req.socket.destroy());
      req.pipe(preq);
      return;
    }
    // The housekeeping app is the site's front page.
    if (url.pathname === '/' || url.pathname === '/www/app') {
      res.writeHead(302, { location: '/www/app/' + url.search + (url.hash ?? '') }).end();
      return;
    }
    const rel = url.pathname.endsWith('/') ? `${url.pathname}index.html` : url.pathname;
    const file = path.join(root, decodeURIComponent(rel));
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404).end('not found'); return; }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
        'cache-control': 'no-store',
      });
      res.end(data);
    });
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, stats, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
  const s = await startStaticServer({ root, upstream: process.env.TIDESYNC_UPSTREAM ?? null, port: Number(process.env.PORT ?? 8088) });
  if (!process.env.QUIET) console.log(`serving ${root} at ${s.url}`);
}
