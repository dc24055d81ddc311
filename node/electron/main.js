'use strict';
// tidesync in Electron's main process: the addon runs here (N-API: the same
// tidesync.node as under Node), its key comes from safeStorage, and each
// window's preload (electron/preload.js) reaches it over a MessagePort.
//
//   const { app, ipcMain, safeStorage, MessageChannelMain } = require('electron');
//   const { openForElectron } = require('tidesync-native/electron');
//   app.whenReady().then(async () => {
//     const db = await openForElectron({ app, ipcMain, safeStorage, MessageChannelMain },
//       { serverUrl, apiKey, terminalId, branchId });
//     new BrowserWindow({ webPreferences: { preload: require.resolve('tidesync-native/electron/preload') } });
//   });

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { TideSync, TideSyncError } = require('..');
const { serve } = require('./bridge');

/** The store's host key: 32 random bytes, kept on disk only encrypted by
 *  `safeStorage` (the OS keychain: Keychain, DPAPI, Secret Service or
 *  kwallet). Refuses when safeStorage would only obfuscate (Linux without a
 *  keyring: backend `basic_text`) unless `allowWeak`. */
function keyFromSafeStorage(safeStorage, file, { allowWeak = false } = {}) {
  if (!safeStorage.isEncryptionAvailable()) {
    throw new TideSyncError('STORE_WRONG_KEY', 'safeStorage cannot encrypt on this machine: no key for the store');
  }
  const backend = typeof safeStorage.getSelectedStorageBackend === 'function' ? safeStorage.getSelectedStorageBackend() : null;
  if (backend === 'basic_text' && !allowWeak) {
    throw new TideSyncError('STORE_WRONG_KEY', 'safeStorage has no OS keyring here (basic_text): the store key would be kept in the clear');
  }
  if (fs.existsSync(file)) {
    const hex = safeStorage.decryptString(fs.readFileSync(file));
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new TideSyncError('STORE_WRONG_KEY', `${file} does not hold a tidesync key`);
    return Buffer.from(hex, 'hex');
  }
  const key = crypto.randomBytes(32);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, safeStorage.encryptString(key.toString('hex')));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return key;
}

/** Serves `db` to every window whose preload asks for it ('tidesync:connect'). Returns the function that stops. */
function attach({ ipcMain, MessageChannelMain }, db) {
  const stops = new Set();
  const onConnect = (event) => {
    const { port1, port2 } = new MessageChannelMain();
    const stop = serve(port1, db);
    stops.add(stop);
    event.sender.postMessage('tidesync:port', null, [port2]);
    event.sender.once('destroyed', () => { stop(); stops.delete(stop); });
  };
  ipcMain.on('tidesync:connect', onConnect);
  return () => {
    ipcMain.removeListener('tidesync:connect', onConnect);
    for (const s of stops) s();
    stops.clear();
  };
}

/** Opens the store in `app.getPath('userData')` with a safeStorage key and serves it to windows. */
async function openForElectron(electron, options) {
  const dir = electron.app.getPath('userData');
  const hostKey = keyFromSafeStorage(electron.safeStorage, path.join(dir, 'tidesync.key.enc'), options);
  const { allowWeak, ...rest } = options;
  const db = await TideSync.open({ path: path.join(dir, 'tidesync.db'), ...rest, key: { hostKey } });
  hostKey.fill(0);
  const detach = attach(electron, db);
  electron.app.on('will-quit', () => { detach(); db.close(); });
  return db;
}

module.exports = { openForElectron, attach, keyFromSafeStorage, serve };
