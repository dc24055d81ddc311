'use strict';
// The main-process half of tidesync's Electron bridge: it answers the
// renderer's calls on a MessagePort (Electron's MessagePortMain, or any
// port with postMessage and message events) and forwards events. The
// renderer half is preload.js. Messages:
//   renderer → main  {t:'call', id, method, args} | {t:'sub', id, filter} | {t:'status', id} | {t:'unsub', id}
//   main → renderer  {t:'res', id, value} | {t:'res', id, error:{code,message}} | {t:'ev', id, data}

/** Methods a renderer may call: the TideSync API minus the lifecycle and the scorer (a model runs in the main process), which the main process owns. */
const METHODS = Object.freeze([
  'create', 'patch', 'delete', 'append', 'get', 'query', 'status', 'metrics', 'syncNow',
  'reconcile', 'outbox', 'deadLetters', 'held', 'release', 'retry', 'retryAll', 'discardAll', 'audit', 'discard',
  'conflicts', 'resolve', 'waitForFirstSync', 'identity',
]);

/** {send, listen, close} over an Electron MessagePortMain or a DOM/Node MessagePort. */
function endpoint(port) {
  const electronMain = typeof port.on === 'function' && typeof port.start === 'function' && !('onmessage' in port);
  return {
    send: (m) => port.postMessage(m),
    listen(fn) {
      if (electronMain) {
        port.on('message', (e) => fn(e.data));
        port.start();
      } else {
        port.onmessage = (e) => fn(e.data);
      }
    },
    close: () => port.close(),
  };
}

/** Serves `db` (a TideSync) to the renderer at the other end of `port`. Returns the function that stops. */
function serve(port, db) {
  const ep = endpoint(port);
  const subscriptions = new Map();
  const reply = (id, p) => Promise.resolve().then(p).then(
    (value) => ep.send({ t: 'res', id, value }),
    (e) => ep.send({ t: 'res', id, error: { code: typeof e?.code === 'string' ? e.code : 'INTERNAL', message: String(e?.message ?? e) } }),
  );
  ep.listen((m) => {
    if (!m || typeof m !== 'object') return;
    if (m.t === 'call') {
      reply(m.id, () => {
        if (!METHODS.includes(m.method)) {
          const e = new Error(`unknown method ${String(m.method)}`); e.code = 'BAD_ARGUMENT'; throw e;
        }
        return db[m.method](...(Array.isArray(m.args) ? m.args : []));
      });
    } else if (m.t === 'sub') {
      reply(m.id, () => { subscriptions.set(m.id, db.subscribe(m.filter ?? {}, (data) => ep.send({ t: 'ev', id: m.id, data }))); });
    } else if (m.t === 'live') {
      reply(m.id, () => {
        subscriptions.set(m.id, db.live(m.filter ?? {}, (data) => ep.send({ t: 'ev', id: m.id, data }),
          (e) => ep.send({ t: 'everr', id: m.id, error: { code: typeof e?.code === 'string' ? e.code : 'INTERNAL', message: String(e?.message ?? e) } })));
      });
    } else if (m.t === 'status') {
      reply(m.id, () => { subscriptions.set(m.id, db.onStatus((data) => ep.send({ t: 'ev', id: m.id, data }))); });
    } else if (m.t === 'unsub') {
      subscriptions.get(m.id)?.();
      subscriptions.delete(m.id);
    }
  });
  return () => {
    for (const off of subscriptions.values()) off();
    subscriptions.clear();
    ep.close();
  };
}

module.exports = { serve, endpoint, METHODS };
