// What the newer end-to-end tests share: the repository root, Debian's
// chromium and its flags (root needs --no-sandbox), and the test page.
import path from 'node:path';
import { before, after } from 'node:test';
import { startStaticServer } from '../server.mjs';
import { startSyncServer, findServerBinary } from './sync-server.mjs';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
export const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];

/** The page that imports pkg/ (www/e2e/app.html), ready; page errors are logged. */
export async function openPage(ctx, webUrl) {
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`# page: ${m.text()}`); });
  await page.goto(`${webUrl}/www/e2e/app.html`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

/** Registers the `before` and `after` hooks of a test file that needs the
 *  reference server (startSyncServer, with `options`) behind www/server.mjs
 *  on one origin; `servers.sync` and `servers.web` are set once both run. */
export function useServers(options) {
  const servers = { sync: null, web: null };
  before(async () => {
    if (!findServerBinary()) throw new Error('the reference server is not built (cargo build -p tidesync-server)');
    servers.sync = await startSyncServer(options);
    servers.web = await startStaticServer({ root: ROOT, upstream: servers.sync.url });
  });
  after(async () => {
    await servers.web?.close(); await servers.sync?.close();
  });
  return servers;
}
