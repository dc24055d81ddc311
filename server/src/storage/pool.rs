//! A minimal connection pool: idle connections in a stack, new ones made on
//! demand. The HTTP layer bounds how many storage calls run at once, which
//! bounds the pool too.

use std::sync::Mutex;

use crate::storage::StorageError;

type Factory<C> = Box<dyn Fn() -> Result<C, StorageError> + Send + Sync>;

pub(crate) struct Pool<C> {
    idle: Mutex<Vec<C>>,
    make: Factory<C>,
    max_idle: usize,
}

impl<C> Pool<C> {
    pub(crate) fn new(
        max_idle: usize,
        make: impl Fn() -> Result<C, StorageError> + Send + Sync + 'static,
    ) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            make: Box::new(make),
            max_idle,
        }
    }

    /// Runs `f` on a pooled connection. The connection goes back to the pool
    /// afterwards if `healthy` says so (and is dropped if `f` panicked).
    pub(crate) fn with<R>(
        &self,
        healthy: impl Fn(&C) -> bool,
        f: impl FnOnce(&mut C) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => (self.make)()?,
        };
        let out = f(&mut conn);
        if healthy(&conn) {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        out
    }

    /// Takes every idle connection out of the pool.
    pub(crate) fn drain(&self) -> Vec<C> {
        std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
