// Vue composables over a TideSync database: `import { useQuery, useStatus } from 'tidesync/vue'`.
import type { MaybeRefOrGetter, ShallowRef } from 'vue';
import type { CollectionName, LiveQuery, LocalEntity, Schema, Status, TideSync, TideSyncError } from './tidesync.js';

/** The refs `useQuery` returns. */
export interface QueryRefs<R> {
  /** The page's rows: empty until the first result, then the last one (kept
   *  when a read fails). Replaced whole on each change (a shallow ref). */
  rows: Readonly<ShallowRef<readonly R[]>>;
  /** The last failed read (or a query `live()` refused), null once rows arrive again. */
  error: Readonly<ShallowRef<TideSyncError | null>>;
  /** No result yet for this database and query (true while `db` is null). */
  loading: Readonly<ShallowRef<boolean>>;
}

/**
 * The rows of a live page query (`db.live(query, …)`) as refs, updated
 * whenever they change: this tab's writes, other tabs, pulls. `db` and
 * `query` may be plain values, refs or getters (`() => ({ collection:
 * 'rooms', limit: limit.value })`): when `db` or the query's `collection`,
 * `after` or `limit` change, the query is subscribed again (and starts
 * loading, with no rows). Call it in `setup()` or inside an `effectScope()`:
 * the subscription is released when that scope is disposed (outside any
 * scope it is never released).
 */
export function useQuery<S extends Schema, C extends CollectionName<S>>(
  db: MaybeRefOrGetter<TideSync<S> | null | undefined>,
  query: MaybeRefOrGetter<LiveQuery<C>>,
): QueryRefs<LocalEntity<S[C], C>>;

/** The sync status of `db` (`db.onStatus`) as a ref: null until the first
 *  one, and while `db` is null. Released with the scope, as `useQuery`. */
export function useStatus(db: MaybeRefOrGetter<TideSync | null | undefined>): Readonly<ShallowRef<Status | null>>;
