// The page the end-to-end tests drive: it imports the npm package from pkg/
// exactly as an app would, and exposes it to the test.
import init, { TideSync } from '/pkg/tidesync.js';

await init();
window.TideSync = TideSync;
window.events = [];
window.ready = true;
