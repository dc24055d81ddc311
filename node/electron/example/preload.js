'use strict';
// Exposes `window.tidesync` (the TideSync API over a MessagePort to the main process).
require('tidesync-native/electron/preload');
