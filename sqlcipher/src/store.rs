//! [`SqlCipherStore`]: the [`Store`] trait on one SQLCipher file.

use crate::migrations::{self, MigrationError, MIGRATIONS};
use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode as SqliteCode, OpenFlags, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tidesync::error_code::ErrorCode;
use tidesync::protocol::EntityKey;
use tidesync::store::*;
use zeroize::Zeroizing;

/// The key a store is opened with.
pub enum StoreKey {
    /// No encryption (tests, benchmarks, data that is not sensitive).
    Plain,
    /// A random 32-byte key from the host or the OS keychain, used as
    /// SQLCipher's raw key (no key derivation).
    Raw(Zeroizing<[u8; 32]>),
    /// A passphrase, stretched by SQLCipher's PBKDF2-HMAC-SHA512
    /// (256,000 iterations: about 0.2 s per open).
    Passphrase(Zeroizing<String>),
}

impl StoreKey {
    /// A raw key.
    pub fn raw(key: [u8; 32]) -> Self {
        StoreKey::Raw(Zeroizing::new(key))
    }

    /// The store is encrypted with this key.
    pub fn is_encrypted(&self) -> bool {
        !matches!(self, StoreKey::Plain)
    }

    /// The `PRAGMA key` statement for this key, if any.
    fn pragma(&self) -> Option<Zeroizing<String>> {
        match self {
            StoreKey::Plain => None,
            StoreKey::Raw(k) => {
                let mut s = Zeroizing::new(String::with_capacity(80));
                s.push_str("PRAGMA key = \"x'");
                for b in k.iter() {
                    s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                    s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
                }
                s.push_str("'\"");
                Some(s)
            }
            StoreKey::Passphrase(p) => {
                let mut s = Zeroizing::new(String::with_capacity(p.len() + 20));
                s.push_str("PRAGMA key = '");
                for c in p.chars() {
                    if c == '\'' {
                        s.push('\'');
                    }
                    s.push(c);
                }
                s.push('\'');
                Some(s)
            }
        }
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKey::Plain => "Plain",
            StoreKey::Raw(_) => "Raw(..)",
            StoreKey::Passphrase(_) => "Passphrase(..)",
        })
    }
}

/// Why a store could not be opened. Nothing was written in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The key does not open this file.
    #[error("the key does not open this store")]
    WrongKey,
    /// An encrypted file without a key, a plain one with a key, or a build
    /// without SQLCipher asked for encryption.
    #[error("key mismatch: {0}")]
    KeyMismatch(String),
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Schema(#[from] MigrationError),
    /// SQLite failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpenError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            OpenError::WrongKey => ErrorCode::StoreWrongKey,
            OpenError::KeyMismatch(_) => ErrorCode::StoreKeyMismatch,
            OpenError::Schema(MigrationError::Failed { error, .. }) => error.code(),
            OpenError::Schema(_) => ErrorCode::SchemaUnsupported,
            OpenError::Store(e) => e.code(),
        }
    }
}

/// The first 16 bytes of every plaintext SQLite database.
pub(crate) const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A SQLite error as the core's store error.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(SqliteCode::DiskFull) => StoreError::QuotaExceeded,
        Some(SqliteCode::DatabaseCorrupt | SqliteCode::NotADatabase) => {
            StoreError::Corrupt(e.to_string())
        }
        Some(SqliteCode::CannotOpen) => StoreError::Gone(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

fn decode<T: DeserializeOwned>(table: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{table}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// Which file the store opened, to notice it being deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(FileId(m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        Some(FileId(0, 0))
    }
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    encrypted: bool,
    file: Option<FileId>,
    conn: Mutex<Option<Connection>>,
    /// Armed by [`InjectFaults`]: the next commit fails after this many writes.
    fail_after: Mutex<Option<usize>>,
}

/// A [`Store`] on one SQLCipher (or plain SQLite) file. Clones share the
/// connection; [`close`](SqlCipherStore::close) ends it for all of them.
#[derive(Debug, Clone)]
pub struct SqlCipherStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqlCipherStore {
    /// Opens (creating if needed) the store at `path` and brings its schema
    /// up to date.
    pub fn open(path: impl AsRef<Path>, key: StoreKey) -> Result<Self, OpenError> {
        Self::open_with_migrations(path, key, MIGRATIONS)
    }

    /// As [`open`](Self::open) with another list of migrations (tests of the
    /// migration checks, fixtures of older versions).
    #[doc(hidden)]
    pub fn open_with_migrations(
        path: impl AsRef<Path>,
        key: StoreKey,
        migrations: &[migrations::Migration],
    ) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let header = read_header(&path);
        if let Some(h) = &header {
            let plain = h == PLAIN_HEADER;
            if plain && key.is_encrypted() {
                return Err(OpenError::KeyMismatch(
                    "the store is not encrypted and was opened with a key".into(),
                ));
            }
            if !plain && !key.is_encrypted() {
                return Err(OpenError::KeyMismatch(
                    "the store is encrypted and was opened without a key".into(),
                ));
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(sqlite_error)?;
        // Wrong-key attempts are expected here; SQLCipher would log them on stderr.
        let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE");
        if let Some(pragma) = key.pragma() {
            let cipher: String = conn
                .query_row("PRAGMA cipher_version", [], |r| r.get(0))
                .unwrap_or_default();
            if cipher.is_empty() {
                return Err(OpenError::KeyMismatch(
                    "this build's SQLite has no SQLCipher: refusing to store data unencrypted"
                        .into(),
                ));
            }
            conn.execute_batch(&pragma).map_err(sqlite_error)?;
        }
        // The first read decrypts page 1: a wrong key fails here, before
        // anything is written.
        if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            return Err(match e.sqlite_error_code() {
                Some(SqliteCode::NotADatabase) if key.is_encrypted() => OpenError::WrongKey,
                _ => OpenError::Store(sqlite_error(e)),
            });
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sqlite_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Store(StoreError::Backend(format!(
                "journal_mode is {mode}, not wal"
            ))));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA temp_store = MEMORY;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(sqlite_error)?;
        migrations::migrate(&mut conn, migrations, tidesync::env::unix_now_ms()).map_err(|e| {
            match e {
                // A damaged page met while reading the schema.
                MigrationError::Failed {
                    version,
                    error: StoreError::Backend(m),
                } if key.is_encrypted() => {
                    let probe = rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                        Some(m.clone()),
                    );
                    match diagnose(&conn, true, probe) {
                        StoreError::Corrupt(c) => OpenError::Store(StoreError::Corrupt(c)),
                        _ => OpenError::Schema(MigrationError::Failed {
                            version,
                            error: StoreError::Backend(m),
                        }),
                    }
                }
                e => OpenError::Schema(e),
            }
        })?;
        Ok(SqlCipherStore {
            inner: Arc::new(Inner {
                encrypted: key.is_encrypted(),
                file: file_id(&path),
                path,
                conn: Mutex::new(Some(conn)),
                fail_after: Mutex::new(None),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Pages are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.inner.encrypted
    }

    /// Closes the connection (checkpointing the WAL into the file); every
    /// later call of this store and its clones is `Gone`.
    pub fn close(&self) {
        lock(&self.inner.conn).take();
    }

    /// Deletes a store's files (the database, its `-wal` and `-shm`, and its
    /// key envelope).
    pub fn destroy(path: impl AsRef<Path>) -> Result<(), StoreError> {
        let path = path.as_ref();
        for suffix in ["", "-wal", "-shm", "-journal", ".key"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Backend(e.to_string())),
            }
        }
        Ok(())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.with_conn(|c| {
            Ok(migrations::applied(c)
                .map_err(sqlite_error)?
                .iter()
                .map(|r| r.0)
                .max()
                .unwrap_or(0))
        })
    }

    /// Runs `f` on the open connection (benchmarks and tests look inside).
    #[doc(hidden)]
    pub fn with_conn<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = lock(&self.inner.conn);
        let conn = guard
            .as_mut()
            .ok_or_else(|| StoreError::Gone("the store was closed".into()))?;
        f(conn)
    }

    /// Runs `f` on the open connection; a SQLite error is classified with
    /// [`diagnose`].
    fn run<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        self.with_conn(|c| f(c).map_err(|e| diagnose(c, self.inner.encrypted, e)))
    }

    fn query_values(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<String>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }
}

/// The store error for a SQLite error. SQLCipher reports a page whose HMAC
/// does not verify as a plain `SQLITE_ERROR` (and the connection stays
/// unusable): for an encrypted store, a generic error is checked against
/// `PRAGMA cipher_integrity_check`, which verifies every page of the file,
/// and is `Corrupt` when a page fails.
pub(crate) fn diagnose(conn: &Connection, encrypted: bool, e: rusqlite::Error) -> StoreError {
    let generic = e.sqlite_error_code() == Some(SqliteCode::Unknown);
    let err = sqlite_error(e);
    if !(encrypted && generic) {
        return err;
    }
    let failures: Vec<String> = conn
        .prepare("PRAGMA cipher_integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_default();
    match failures.first() {
        Some(first) => StoreError::Corrupt(format!(
            "{first} ({} failing, after: {err})",
            failures.len()
        )),
        None => err,
    }
}

pub(crate) fn read_header(path: &Path) -> Option<[u8; 16]> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 16];
    f.read_exact(&mut h).ok()?;
    Some(h)
}

/// One write, its value already encoded.
enum Write {
    PutEntity(EntityKey, String),
    DeleteEntity(EntityKey),
    PutOutbox(u64, String),
    DeleteOutbox(u64),
    PutConflict(EntityKey, String),
    DeleteConflict(EntityKey),
    AppendAudit(u64, String),
    PutMeta(String),
    PutCredential(Option<String>),
}

fn prepare(op: WriteOp) -> Result<Write, StoreError> {
    Ok(match op {
        WriteOp::PutEntity(r) => Write::PutEntity(r.key.clone(), encode(&r)?),
        WriteOp::DeleteEntity(k) => Write::DeleteEntity(k),
        WriteOp::PutOutbox(e) => Write::PutOutbox(e.seq, encode(&e)?),
        WriteOp::DeleteOutbox(s) => Write::DeleteOutbox(s),
        WriteOp::PutConflict(c) => Write::PutConflict(c.key.clone(), encode(&c)?),
        WriteOp::DeleteConflict(k) => Write::DeleteConflict(k),
        WriteOp::AppendAudit(a) => Write::AppendAudit(a.seq, encode(&a)?),
        WriteOp::PutMeta(m) => Write::PutMeta(encode(&m)?),
        WriteOp::PutCredential(c) => Write::PutCredential(c.as_ref().map(encode).transpose()?),
    })
}

/// A key is never written into a file that is not encrypted.
fn plaintext_secret() -> StoreError {
    StoreError::Backend("refusing to keep an API key in a store that is not encrypted".into())
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Backend(format!("seq {seq} out of range")))
}

fn apply(tx: &rusqlite::Transaction<'_>, w: Write) -> rusqlite::Result<()> {
    match w {
        Write::PutEntity(k, v) => tx
            .prepare_cached(
                "INSERT INTO entities (collection, id, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (collection, id) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![k.collection, k.id, v]),
        Write::DeleteEntity(k) => tx
            .prepare_cached("DELETE FROM entities WHERE collection = ?1 AND id = ?2")?
            .execute(params![k.collection, k.id]),
        Write::PutOutbox(seq, v) => tx
            .prepare_cached("INSERT OR REPLACE INTO outbox (seq, value) VALUES (?1, ?2)")?
            .execute(params![seq as i64, v]),
        Write::DeleteOutbox(seq) => tx
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
            .execute(params![seq as i64]),
        Write::PutConflict(k, v) => tx
            .prepare_cached(
                "INSERT OR REPLACE INTO conflicts (collection, id, value) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![k.collection, k.id, v]),
        Write::DeleteConflict(k) => tx
            .prepare_cached("DELETE FROM conflicts WHERE collection = ?1 AND id = ?2")?
            .execute(params![k.collection, k.id]),
        Write::AppendAudit(seq, v) => tx
            .prepare_cached("INSERT OR REPLACE INTO audit (seq, value) VALUES (?1, ?2)")?
            .execute(params![seq as i64, v]),
        Write::PutMeta(v) => tx
            .prepare_cached("INSERT OR REPLACE INTO meta (id, value) VALUES (1, ?1)")?
            .execute(params![v]),
        Write::PutCredential(Some(v)) => tx
            .prepare_cached("INSERT OR REPLACE INTO credential (id, value) VALUES (1, ?1)")?
            .execute(params![v]),
        Write::PutCredential(None) => tx.prepare_cached("DELETE FROM credential")?.execute([]),
    }
    .map(|_| ())
}

// The calls run SQLite synchronously inside the async methods: a read is
// microseconds, a commit one WAL fsync. The Node addon runs them on its
// runtime's worker threads, never on the JS thread.
#[async_trait]
impl Store for SqlCipherStore {
    fn health(&self) -> Result<(), StoreError> {
        if lock(&self.inner.conn).is_none() {
            return Err(StoreError::Gone("the store was closed".into()));
        }
        if file_id(&self.inner.path) != self.inner.file {
            return Err(StoreError::Gone(format!(
                "{} was deleted or replaced",
                self.inner.path.display()
            )));
        }
        Ok(())
    }

    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        let v = self.query_values("SELECT value FROM meta WHERE id = 1", [])?;
        v.first().map(|t| decode("meta", t)).transpose()
    }

    fn keeps_secrets(&self) -> bool {
        self.inner.encrypted
    }

    async fn load_credential(&self) -> Result<Option<StoredCredential>, StoreError> {
        let v = self.query_values("SELECT value FROM credential WHERE id = 1", [])?;
        v.first().map(|t| decode("credential", t)).transpose()
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        let v = self.query_values(
            "SELECT value FROM entities WHERE collection = ?1 AND id = ?2",
            params![key.collection, key.id],
        )?;
        v.first().map(|t| decode("entities", t)).transpose()
    }

    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        let texts = self.run(|c| {
            let mut stmt =
                c.prepare_cached("SELECT value FROM entities WHERE collection = ?1 AND id = ?2")?;
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let mut rows = stmt.query(params![k.collection, k.id])?;
                out.push(match rows.next()? {
                    Some(r) => Some(r.get::<_, String>(0)?),
                    None => None,
                });
            }
            Ok(out)
        })?;
        texts
            .iter()
            .map(|t| t.as_deref().map(|t| decode("entities", t)).transpose())
            .collect()
    }

    async fn get_sorted(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        by_spans(keys, |collection, first, last| {
            self.query_values(
                "SELECT value FROM entities WHERE collection = ?1 AND id BETWEEN ?2 AND ?3
                 ORDER BY id",
                params![collection, first, last],
            )?
            .iter()
            .map(|t| decode("entities", t))
            .collect()
        })
    }

    async fn scan_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let texts = match after {
            Some(a) => self.query_values(
                "SELECT value FROM entities WHERE collection = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                params![collection, a, limit],
            )?,
            None => self.query_values(
                "SELECT value FROM entities WHERE collection = ?1 ORDER BY id LIMIT ?2",
                params![collection, limit],
            )?,
        };
        texts.iter().map(|t| decode("entities", t)).collect()
    }

    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        self.query_values(
            "SELECT value FROM entities WHERE collection = ?1 ORDER BY id",
            params![collection],
        )?
        .iter()
        .map(|t| decode("entities", t))
        .collect()
    }

    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.query_values("SELECT name FROM collections ORDER BY name", [])
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.query_values("SELECT value FROM outbox ORDER BY seq", [])?
            .iter()
            .map(|t| decode("outbox", t))
            .collect()
    }

    async fn conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        self.query_values("SELECT value FROM conflicts ORDER BY collection, id", [])?
            .iter()
            .map(|t| decode("conflicts", t))
            .collect()
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_values(
            "SELECT value FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after, limit],
        )?
        .iter()
        .map(|t| decode("audit", t))
        .collect()
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for op in &batch.ops {
            match op {
                WriteOp::PutOutbox(e) => seq_param(e.seq).map(drop)?,
                WriteOp::DeleteOutbox(s) => seq_param(*s).map(drop)?,
                WriteOp::AppendAudit(a) => seq_param(a.seq).map(drop)?,
                WriteOp::PutCredential(Some(_)) if !self.inner.encrypted => {
                    return Err(plaintext_secret());
                }
                _ => {}
            }
        }
        // Encode everything before the transaction opens.
        let writes = batch
            .ops
            .into_iter()
            .map(prepare)
            .collect::<Result<Vec<_>, _>>()?;
        let fail_after = lock(&self.inner.fail_after).take();
        let count = writes.len();
        let encrypted = self.inner.encrypted;
        self.with_conn(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            for (i, w) in writes.into_iter().enumerate() {
                if fail_after == Some(i) {
                    // Dropping `tx` rolls back what this batch wrote so far.
                    return Err(StoreError::Backend(format!(
                        "injected commit failure after {i} writes"
                    )));
                }
                if let Err(e) = apply(&tx, w) {
                    return Err(diagnose(&tx, encrypted, e));
                }
            }
            if fail_after.is_some_and(|n| n >= count) {
                return Err(StoreError::Backend(format!(
                    "injected commit failure after {count} writes"
                )));
            }
            tx.commit().map_err(sqlite_error)
        })
    }
}

impl InjectFaults for SqlCipherStore {
    fn fail_next_commit_after(&self, ops: usize) {
        *lock(&self.inner.fail_after) = Some(ops);
    }
}
