// React hooks over a TideSync database: `import { useQuery, useStatus } from 'tidesync/react'`.
import type { CollectionName, LiveQuery, LocalEntity, Schema, Status, TideSync, TideSyncError } from './tidesync.js';

/** What `useQuery` gives at each render. */
export interface QueryState<R> {
  /** The page's rows: empty until the first result, then the last one (kept when a read fails). */
  rows: readonly R[];
  /** The last failed read (or a query `live()` refused), null once rows arrive again. */
  error: TideSyncError | null;
  /** No result yet for this database and query (true while `db` is null). */
  loading: boolean;
}

/**
 * The rows of a live page query (`db.live(query, …)`), re-rendering the
 * component whenever they change: this tab's writes, other tabs, pulls.
 * It subscribes while the component is mounted and again when `db` or the
 * query's `collection`, `after` or `limit` change (a new query starts
 * loading, with no rows); `db` may be null while the database opens. The
 * query may be a new object at each render.
 */
export function useQuery<S extends Schema, C extends CollectionName<S>>(
  db: TideSync<S> | null | undefined,
  query: LiveQuery<C>,
): QueryState<LocalEntity<S[C], C>>;

/** The sync status of `db` (`db.onStatus`): null until the first one, and while `db` is null. */
export function useStatus(db: TideSync | null | undefined): Status | null;
