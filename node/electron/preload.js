'use strict';
// The renderer half of tidesync's Electron bridge, loaded as the window's
// preload script. It asks the main process (electron/main.js) for a
// MessagePort and exposes `window.tidesync`, with the same methods as
// TideSync, through contextBridge. Self-contained: a sandboxed preload can
// require nothing but `electron`.

/** The renderer API over `port` (a MessagePort, or a promise of one). */
function connect(portOrPromise) {
  let next = 1;
  const pending = new Map();
  const listeners = new Map();
  const errorListeners = new Map();
  const ready = Promise.resolve(portOrPromise).then((port) => {
    port.onmessage = (e) => {
      const m = e.data;
      if (m.t === 'res') {
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        if (m.error) {
          const err = new Error(m.error.message);
          err.name = 'TideSyncError';
          err.code = m.error.code;
          p.reject(err);
        } else {
          p.resolve(m.value);
        }
      } else if (m.t === 'ev') {
        const cb = listeners.get(m.id);
        if (cb) { try { cb(m.data); } catch (e) { console.error('tidesync: a subscriber threw', e); } }
      } else if (m.t === 'everr') {
        const cb = errorListeners.get(m.id);
        if (cb) {
          const err = new Error(m.error.message);
          err.name = 'TideSyncError';
          err.code = m.error.code;
          try { cb(err); } catch (e) { console.error('tidesync: a subscriber threw', e); }
        }
      }
    };
    return port;
  });
  let closed = false;
  const request = async (message, id = next++) => {
    if (closed) { const e = new Error('this TideSync is closed'); e.code = 'INVALID_STATE'; throw e; }
    const port = await ready;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      try {
        port.postMessage({ ...message, id });
      } catch (e) {
        // A value the channel cannot carry (a function, a symbol) is not JSON either.
        pending.delete(id);
        const err = new Error(`arguments: ${e.message}`);
        err.name = 'TideSyncError';
        err.code = 'BAD_ARGUMENT';
        reject(err);
      }
    });
  };
  const call = (method) => (...args) => request({ t: 'call', method, args });
  const listen = (t, filter, callback, onError) => {
    if (typeof callback !== 'function') { const e = new Error('callback must be a function'); e.code = 'BAD_ARGUMENT'; throw e; }
    // The subscription is known on both sides by its request's id.
    const id = next++;
    listeners.set(id, callback);
    if (typeof onError === 'function') errorListeners.set(id, onError);
    request({ t, filter }, id).catch((e) => {
      listeners.delete(id);
      errorListeners.delete(id);
      if (typeof onError === 'function') onError(e);
    });
    return () => {
      errorListeners.delete(id);
      if (listeners.delete(id)) ready.then((port) => port.postMessage({ t: 'unsub', id }));
    };
  };
  const api = {};
  for (const m of ['create', 'patch', 'delete', 'append', 'get', 'query', 'status', 'metrics', 'syncNow',
    'reconcile', 'outbox', 'deadLetters', 'held', 'release', 'retry', 'retryAll', 'discardAll', 'audit', 'discard',
    'conflicts', 'resolve', 'waitForFirstSync', 'identity']) {
    api[m] = call(m);
  }
  api.subscribe = (filter, callback) => listen('sub', filter ?? {}, callback);
  api.onStatus = (callback) => listen('status', undefined, callback);
  // A live query: the main process keeps it (db.live) and sends each new result.
  api.live = (query, callback, onError) => listen('live', query, callback, onError);
  api.isLeader = () => !closed;
  api.close = () => { closed = true; listeners.clear(); errorListeners.clear(); };
  return api;
}

let electron = null;
try { electron = require('electron'); } catch { /* plain Node: tests use connect() */ }
if (electron && electron.contextBridge && electron.ipcRenderer) {
  const { contextBridge, ipcRenderer } = electron;
  const port = new Promise((resolve) => ipcRenderer.once('tidesync:port', (e) => resolve(e.ports[0])));
  ipcRenderer.send('tidesync:connect');
  contextBridge.exposeInMainWorld('tidesync', connect(port));
}

if (typeof module !== 'undefined') module.exports = { connect };
