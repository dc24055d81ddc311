'use strict';
// The main process: opens the encrypted store in userData with a key kept
// by safeStorage (the OS keychain), syncs it with the server, and serves it
// to the window through the preload bridge. Configure with environment
// variables (scripts/serve.sh prints a URL and keys):
//   TIDESYNC_URL=http://127.0.0.1:8080 TIDESYNC_KEY=ts_… TIDESYNC_TERMINAL=desk-1 \
//   TIDESYNC_BRANCH=hotel-1 npm start
const path = require('node:path');
const { app, BrowserWindow, ipcMain, safeStorage, MessageChannelMain, net } = require('electron');
const { openForElectron } = require('tidesync-native/electron');

app.whenReady().then(async () => {
  const db = await openForElectron({ app, ipcMain, safeStorage, MessageChannelMain }, {
    serverUrl: process.env.TIDESYNC_URL ?? 'http://127.0.0.1:8080',
    apiKey: process.env.TIDESYNC_KEY ?? '',
    terminalId: process.env.TIDESYNC_TERMINAL ?? 'desk-1',
    branchId: process.env.TIDESYNC_BRANCH ?? 'hotel-1',
    policies: { rooms: 'merge-three-way' },
  });
  // Electron knows the connectivity; the engine backs off while offline.
  const online = () => db.setOnline(net.isOnline()).catch(() => {});
  online();
  setInterval(online, 5000).unref();

  const win = new BrowserWindow({
    width: 900,
    height: 640,
    webPreferences: {
      preload: path.join(__dirname, 'preload.js'),
      contextIsolation: true,
      sandbox: false, // the preload requires tidesync-native/electron/preload
      nodeIntegration: false,
    },
  });
  win.loadFile(path.join(__dirname, 'index.html'));
});

app.on('window-all-closed', () => app.quit());
