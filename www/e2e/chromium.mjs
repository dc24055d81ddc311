// What the newer end-to-end tests share: the repository root, Debian's
// chromium and its flags (root needs --no-sandbox), and the test page.
import path from 'node:path';

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
