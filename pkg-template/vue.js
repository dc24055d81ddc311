// Vue composables over a TideSync database (`tidesync/vue`; vue is an
// optional peer dependency). Each keeps one subscription for the current
// database and query (both may be refs or getters), replaced when they
// change (after the batch of changes, before the component renders), and
// released when the component or effect scope that called it is disposed.
import { getCurrentScope, onScopeDispose, shallowRef, toValue, watch } from 'vue';

/** Runs `subscribe(db, ...keys)` now and whenever `db` or a key changes,
 *  releasing the previous subscription, and the last one with the scope. */
function follow(sources, subscribe) {
  let release = null;
  const stop = watch(sources, (values) => {
    release?.();
    release = subscribe(...values);
  }, { immediate: true });
  if (getCurrentScope()) {
    onScopeDispose(() => {
      stop();
      release?.();
      release = null;
    });
  }
}

export function useQuery(db, query) {
  const rows = shallowRef(Object.freeze([]));
  const error = shallowRef(null);
  const loading = shallowRef(true);
  const field = (name) => () => toValue(query)[name];
  follow([() => toValue(db), field('collection'), field('after'), field('limit')],
    (current, collection, after, limit) => {
      rows.value = Object.freeze([]);
      error.value = null;
      loading.value = true;
      if (!current) return null;
      const page = { collection };
      if (after !== undefined) page.after = after;
      if (limit !== undefined) page.limit = limit;
      try {
        return current.live(page,
          (next) => { rows.value = next; error.value = null; loading.value = false; },
          (e) => { error.value = e; loading.value = false; });
      } catch (e) {
        // A query live() refuses at once (BAD_ARGUMENT): no subscription.
        error.value = e;
        loading.value = false;
        return null;
      }
    });
  return { rows, error, loading };
}

export function useStatus(db) {
  const status = shallowRef(null);
  follow([() => toValue(db)], (current) => {
    status.value = null;
    return current ? current.onStatus((next) => { status.value = next; }) : null;
  });
  return status;
}
