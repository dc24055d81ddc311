// React hooks over a TideSync database (`tidesync/react`; react is an
// optional peer dependency). Each hook is one external store for
// useSyncExternalStore: React subscribes it when the component mounts (again
// after StrictMode's test unmount) and unsubscribes it when it unmounts or
// the store changes, and every render of one commit reads the same snapshot
// (no tearing). A store belongs to one database and one query; a new one is
// made when either changes, and it starts loading.
import { useMemo, useSyncExternalStore } from 'react';

const WAITING = Object.freeze({ rows: Object.freeze([]), error: null, loading: true });

/** The snapshots of one live query of `db` (none while `db` is null). */
function liveStore(db, collection, after, limit) {
  let snapshot = WAITING;
  return {
    getSnapshot: () => snapshot,
    getServerSnapshot: () => WAITING,
    subscribe(notify) {
      if (!db) return () => {};
      const query = { collection };
      if (after !== undefined) query.after = after;
      if (limit !== undefined) query.limit = limit;
      const set = (next) => { snapshot = next; notify(); };
      let stop;
      try {
        stop = db.live(query,
          (rows) => set({ rows, error: null, loading: false }),
          (error) => set({ rows: snapshot.rows, error, loading: false }));
      } catch (error) {
        // A query live() refuses at once (BAD_ARGUMENT): no subscription.
        set({ rows: snapshot.rows, error, loading: false });
        return () => {};
      }
      return stop;
    },
  };
}

/** The status of `db` (null until the first one, and while `db` is null). */
function statusStore(db) {
  let status = null;
  return {
    getSnapshot: () => status,
    getServerSnapshot: () => null,
    subscribe(notify) {
      if (!db) return () => {};
      return db.onStatus((next) => { status = next; notify(); });
    },
  };
}

export function useQuery(db, query) {
  const { collection, after, limit } = query;
  const store = useMemo(() => liveStore(db, collection, after, limit), [db, collection, after, limit]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getServerSnapshot);
}

export function useStatus(db) {
  const store = useMemo(() => statusStore(db), [db]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getServerSnapshot);
}
