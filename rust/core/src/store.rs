//! The state database: one SQLite file under `.redo/` at the top of the tree.
//!
//! It records every file redors has looked at (sources and targets) with its
//! stamp, content hash and *generation*, a counter that grows each time the
//! file's content identity changes. Each dependency edge stores the
//! generation of the dependency that the target was built against, so "did
//! this dependency change since the target was built" is one comparison.
//!
//! The database is opened in WAL mode and written in short transactions, so
//! a run killed at any point leaves a usable database and a second run on the
//! same tree can read while the first one writes.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::constants::{DB_FILE, SCHEMA_VERSION, STATE_DIR};
use crate::stamp::{FileKind, Hash, Stamp};

/// Flags of a file record.
pub mod flags {
    /// The target called `redo-always`: it is out of date in every run.
    pub const ALWAYS: i64 = 1;
    /// The last build of the target failed.
    pub const FAILED: i64 = 2;
    /// A build of the target started and has not finished. When a run dies
    /// there, the next run rebuilds the target instead of trusting the file.
    pub const BUILDING: i64 = 4;
    /// The target was changed outside redo and is treated as a source until
    /// it is deleted.
    pub const MODIFIED: i64 = 8;
}

/// How a target depends on a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepKind {
    /// `redo-ifchange`: rebuild the target when the file changes.
    IfChange = 1,
    /// `redo-ifcreate`: rebuild the target when the file appears.
    IfCreate = 2,
}

impl DepKind {
    fn from_code(code: i64) -> DepKind {
        if code == DepKind::IfCreate as i64 { DepKind::IfCreate } else { DepKind::IfChange }
    }
}

/// Everything the database records about one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileRecord {
    /// Row id; `None` until the record is first written.
    pub id: Option<i64>,
    /// Whether redo built this file (a target) or only read it (a source).
    pub is_target: bool,
    /// Stamp of the file when redors last looked at it.
    pub stamp: Stamp,
    /// Wall-clock time at which `stamp` was taken, in nanoseconds.
    pub seen_ns: i64,
    /// Content hash matching `stamp`, if the file has content.
    pub hash: Option<Hash>,
    /// Grows each time the file's content identity changes.
    pub generation: i64,
    /// Bit set of [`flags`].
    pub flags: i64,
    /// Value given to `redo-stamp` during the last build, if any.
    pub stamp_hash: Option<Hash>,
    /// Id of the run that last built the target.
    pub built_run: i64,
}

impl FileRecord {
    /// Tells whether a flag of [`flags`] is set.
    pub fn has(&self, flag: i64) -> bool {
        self.flags & flag != 0
    }

    /// Sets or clears a flag of [`flags`].
    pub fn set(&mut self, flag: i64, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

/// One recorded dependency of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepRecord {
    /// Key of the file depended on.
    pub key: PathBuf,
    /// How the target depends on it.
    pub kind: DepKind,
    /// Generation of the file when the target was built.
    pub generation: i64,
}

/// The stderr of a target's last build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// Id of the run that built the target.
    pub run: i64,
    /// Bytes that the script wrote to stderr.
    pub content: Vec<u8>,
    /// Start of the build of each dependency in `content`: byte offset and
    /// the dependency's key, in order.
    pub children: Vec<(u64, PathBuf)>,
    /// While the target is being built: the file its stderr goes to.
    pub live: Option<PathBuf>,
}

fn encode_children(children: &[(u64, PathBuf)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (offset, key) in children {
        let key = key.as_os_str().as_bytes();
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

fn decode_children(mut data: &[u8]) -> Vec<(u64, PathBuf)> {
    let mut children = Vec::new();
    while data.len() >= 12 {
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&data[..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&data[8..12]);
        let len = u32::from_le_bytes(len) as usize;
        let Some(key) = data.get(12..12 + len) else { break };
        children.push((u64::from_le_bytes(offset), PathBuf::from(OsStr::from_bytes(key))));
        data = &data[12 + len..];
    }
    children
}

/// Reason the state database cannot be used.
#[derive(Debug)]
pub enum StoreError {
    /// The file is not a SQLite database or its pages are damaged.
    Corrupt { path: PathBuf, detail: String },
    /// The database was written by a newer redors.
    TooNew { path: PathBuf, found: i32 },
    /// Any other failure to read or write the database.
    Failed { path: PathBuf, detail: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Corrupt { path, detail } => write!(
                f,
                "the state database '{}' is damaged ({detail}); it was left untouched. \
                 Move it aside (mv '{0}' '{0}.bad') to start again with an empty state, \
                 then delete the generated files so that redo builds them again",
                path.display()
            ),
            StoreError::TooNew { path, found } => write!(
                f,
                "the state database '{}' has schema version {found}, newer than the {SCHEMA_VERSION} \
                 this redors understands; upgrade redors, or move the database aside to start over",
                path.display()
            ),
            StoreError::Failed { path, detail } => {
                write!(f, "cannot use the state database '{}': {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE files (
    id          INTEGER PRIMARY KEY,
    path        BLOB NOT NULL UNIQUE,
    is_target   INTEGER NOT NULL DEFAULT 0,
    kind        INTEGER NOT NULL DEFAULT 0,
    ino         INTEGER NOT NULL DEFAULT 0,
    size        INTEGER NOT NULL DEFAULT 0,
    mtime_ns    INTEGER NOT NULL DEFAULT 0,
    ctime_ns    INTEGER NOT NULL DEFAULT 0,
    seen_ns     INTEGER NOT NULL DEFAULT 0,
    hash        BLOB,
    generation  INTEGER NOT NULL DEFAULT 0,
    flags       INTEGER NOT NULL DEFAULT 0,
    stamp_hash  BLOB,
    built_run   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE deps (
    target      INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    dep         INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    PRIMARY KEY (target, seq)
) WITHOUT ROWID;
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    pid         INTEGER NOT NULL,
    started_ns  INTEGER NOT NULL,
    finished_ns INTEGER,
    status      INTEGER,
    startdir    BLOB NOT NULL,
    command     TEXT NOT NULL
);
";

/// Schema changes, in order: entry `i` brings version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[
    // 2: the stderr of each target's last build.
    "CREATE TABLE logs (
        target      INTEGER PRIMARY KEY,
        run         INTEGER NOT NULL,
        content     BLOB NOT NULL,
        children    BLOB NOT NULL,
        live        BLOB
    );",
];

const FILE_COLUMNS: &str = "id, is_target, kind, ino, size, mtime_ns, ctime_ns, seen_ns, hash, \
                            generation, flags, stamp_hash, built_run";

/// How long a run waits for another run's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns the path of the state database of the tree rooted at `top`.
pub fn db_path(top: &Path) -> PathBuf {
    top.join(STATE_DIR).join(DB_FILE)
}

/// A connection to the state database of one tree.
///
/// Reads run in a read transaction that the first read opens and
/// [`Store::end_reads`] (or the next write) closes: SQLite then takes its
/// file locks once for a series of reads instead of once per query, which
/// made up a third of the time of checking a large tree. A run closes it
/// whenever it waits for events, so it never reads a state older than what
/// it saw other runs release.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Whether a read transaction that [`Store::begin_reads`] opened is open.
    reading: Cell<bool>,
}

impl Store {
    /// Opens the database of the tree at `top`, creating `.redo/` and an
    /// empty database when there is none yet.
    pub fn create(top: &Path) -> Result<Store> {
        let path = db_path(top);
        let failed = |detail: String| StoreError::Failed { path: path.clone(), detail };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| failed(err.to_string()))?;
        }
        let conn = Connection::open(&path).map_err(|err| failed(err.to_string()))?;
        let mut store = Store { conn, path, reading: Cell::new(false) };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database for writing; returns `None` when the tree
    /// has none yet.
    pub fn open_existing(top: &Path) -> Result<Option<Store>> {
        if !db_path(top).exists() {
            return Ok(None);
        }
        Store::create(top).map(Some)
    }

    /// Opens an existing database read-only, for queries; returns `None`
    /// when the tree has none yet.
    pub fn open_read_only(top: &Path) -> Result<Option<Store>> {
        let path = db_path(top);
        if !path.exists() {
            return Ok(None);
        }
        let conn =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|err| StoreError::Failed { path: path.clone(), detail: err.to_string() })?;
        let store = Store { conn, path, reading: Cell::new(false) };
        store.configure()?;
        let version = store.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: store.path.clone(), found: version });
        }
        Ok(Some(store))
    }

    /// Sets how long a write waits for another run's write to end.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<()> {
        self.conn.busy_timeout(timeout).map_err(|err| self.error(err))
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(|err| self.error(err))?;
        // The last connection to close would otherwise checkpoint the log
        // into the database and delete it, and the next run would create
        // it again: three fsyncs, 30 to 60 ms on a small run. The log stays
        // instead; the next run reads it back, and the automatic checkpoint
        // below bounds its size.
        self.conn
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|err| self.error(err))?;
        // WAL lets other runs read while this one writes; NORMAL syncing keeps
        // every commit safe against a killed process, which is the fault redo
        // must survive, at a fraction of the cost of FULL. A build commits
        // once per job; a checkpoint (with its fsyncs) every 4000 pages of
        // log, up to 16 MB, instead of SQLite's 1000 takes 40 % off a commit.
        // Turning a new database to WAL needs it to itself, and SQLite
        // returns "busy" there without waiting, so this loop waits for
        // another run that creates it at the same moment.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match self.conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 4000;",
            ) {
                Ok(()) => return Ok(()),
                Err(err)
                    if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => return Err(self.error(err)),
            }
        }
    }

    pub(crate) fn user_version(&self) -> Result<i32> {
        self.conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(|err| self.error(err))
    }

    fn migrate(&mut self) -> Result<()> {
        let version = self.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        // Several runs may start on a new tree at once: the first to take
        // the write lock creates the schema, the others find it done.
        let path = self.path.clone();
        let corrupt = |detail: String| StoreError::Corrupt { path: path.clone(), detail };
        let failed = |err: rusqlite::Error| StoreError::Failed { path: path.clone(), detail: err.to_string() };
        let tx = rusqlite::Transaction::new(&mut self.conn, TransactionBehavior::Immediate).map_err(failed)?;
        let version: i32 = tx.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(failed)?;
        if version == 0 {
            let tables: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0)).map_err(failed)?;
            if tables > 0 {
                return Err(corrupt("it holds tables but no schema version, which redors never writes".into()));
            }
            tx.execute_batch(SCHEMA).map_err(failed)?;
        }
        for (index, step) in MIGRATIONS.iter().enumerate() {
            if version.max(1) <= index as i32 + 1 {
                tx.execute_batch(step).map_err(failed)?;
            }
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};")).map_err(failed)?;
        tx.commit().map_err(failed)
    }

    /// Maps a SQLite error to a [`StoreError`] naming this database.
    pub fn error(&self, err: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let detail = err.to_string();
        match err.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path: self.path.clone(), detail }
            }
            _ => StoreError::Failed { path: self.path.clone(), detail },
        }
    }

    /// Loads the record of the file with the given key.
    pub fn file(&self, key: &Path) -> Result<Option<FileRecord>> {
        self.begin_reads()?;
        let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE path = ?1");
        let mut statement = self.conn.prepare_cached(&sql).map_err(|err| self.error(err))?;
        statement.query_row(params![key_bytes(key)], read_file_row).optional().map_err(|err| self.error(err))
    }

    /// Loads the dependencies of a target in the order they were recorded.
    ///
    /// The query has neither a join nor an `ORDER BY`: SQLite (built with
    /// STAT4) prepares such a query again at every execution, which made
    /// this the most expensive call of a no-op run. The rows come sorted
    /// here instead.
    pub fn deps(&self, target: i64) -> Result<Vec<DepRecord>> {
        self.begin_reads()?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT d.seq, (SELECT f.path FROM files f WHERE f.id = d.dep), d.kind, d.generation \
                 FROM deps d WHERE d.target = ?1",
            )
            .map_err(|err| self.error(err))?;
        let rows = statement
            .query_map(params![target], |row| {
                let path: Vec<u8> = row.get(1)?;
                let dep = DepRecord {
                    key: PathBuf::from(OsString::from_vec(path)),
                    kind: DepKind::from_code(row.get(2)?),
                    generation: row.get(3)?,
                };
                Ok((row.get::<_, i64>(0)?, dep))
            })
            .map_err(|err| self.error(err))?;
        let mut rows = rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|err| self.error(err))?;
        rows.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(rows.into_iter().map(|(_, dep)| dep).collect())
    }

    /// Lists the keys of every file recorded as a target, or as a source.
    pub fn keys(&self, targets: bool) -> Result<Vec<PathBuf>> {
        self.begin_reads()?;
        let mut statement = self
            .conn
            // Targets that produced no file are still targets; a source that
            // was only ever seen missing (an ifcreate dependency) is not listed.
            .prepare_cached("SELECT path FROM files WHERE is_target = ?1 AND (is_target OR kind != 0) ORDER BY path")
            .map_err(|err| self.error(err))?;
        let rows = statement
            .query_map(params![targets], |row| {
                let path: Vec<u8> = row.get(0)?;
                Ok(PathBuf::from(OsStr::from_bytes(&path)))
            })
            .map_err(|err| self.error(err))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|err| self.error(err))
    }

    /// Loads the log of a target's last build, or of the build under way.
    pub fn log(&self, target: i64) -> Result<Option<LogRecord>> {
        self.begin_reads()?;
        let mut statement = self
            .conn
            .prepare_cached("SELECT run, content, children, live FROM logs WHERE target = ?1")
            .map_err(|err| self.error(err))?;
        statement
            .query_row(params![target], |row| {
                let children: Vec<u8> = row.get(2)?;
                let live: Option<Vec<u8>> = row.get(3)?;
                Ok(LogRecord {
                    run: row.get(0)?,
                    content: row.get(1)?,
                    children: decode_children(&children),
                    live: live.map(|path| PathBuf::from(OsStr::from_bytes(&path))),
                })
            })
            .optional()
            .map_err(|err| self.error(err))
    }

    /// Runs `body` on one snapshot of the database: its reads see no write
    /// that another run commits meanwhile.
    pub fn snapshot<T>(&self, body: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.end_reads();
        let value = body(self);
        self.end_reads();
        value
    }

    /// Opens a read transaction unless one is open.
    fn begin_reads(&self) -> Result<()> {
        if self.reading.get() || !self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("BEGIN").map_err(|err| self.error(err))?;
        self.reading.set(true);
        Ok(())
    }

    /// Closes the read transaction, if one is open, so that the next read
    /// sees what other runs committed since.
    pub fn end_reads(&self) {
        if self.reading.replace(false) {
            // Nothing was written: there is nothing that could fail to commit.
            let _ = self.conn.execute_batch("COMMIT");
        }
    }

    /// Runs `body` in one write transaction, committed when it returns `Ok`.
    pub fn write<T>(&mut self, body: impl FnOnce(&Writer<'_>) -> Result<T>) -> Result<T> {
        self.end_reads();
        let path = self.path.clone();
        let failed = |err: rusqlite::Error| StoreError::Failed { path: path.clone(), detail: err.to_string() };
        let tx = rusqlite::Transaction::new(&mut self.conn, TransactionBehavior::Immediate).map_err(failed)?;
        let writer = Writer { tx: &tx, path: &self.path };
        let value = body(&writer)?;
        tx.commit().map_err(failed)?;
        Ok(value)
    }
}

/// Write access to the database inside one transaction.
pub struct Writer<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl Writer<'_> {
    fn error(&self, err: rusqlite::Error) -> StoreError {
        StoreError::Failed { path: self.path.to_path_buf(), detail: err.to_string() }
    }

    /// Inserts or updates the record of the file with the given key and
    /// stores its row id in `record.id`.
    pub fn put_file(&self, key: &Path, record: &mut FileRecord) -> Result<i64> {
        let mut statement = self
            .tx
            .prepare_cached(
                "INSERT INTO files (path, is_target, kind, ino, size, mtime_ns, ctime_ns, seen_ns, \
                 hash, generation, flags, stamp_hash, built_run) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT(path) DO UPDATE SET is_target = ?2, kind = ?3, ino = ?4, size = ?5, \
                 mtime_ns = ?6, ctime_ns = ?7, seen_ns = ?8, hash = ?9, generation = ?10, \
                 flags = ?11, stamp_hash = ?12, built_run = ?13 RETURNING id",
            )
            .map_err(|err| self.error(err))?;
        let stamp = &record.stamp;
        let id = statement
            .query_row(
                params![
                    key_bytes(key),
                    record.is_target,
                    stamp.kind as i64,
                    stamp.ino as i64,
                    stamp.size as i64,
                    stamp.mtime_ns,
                    stamp.ctime_ns,
                    record.seen_ns,
                    record.hash.as_ref().map(|hash| &hash[..]),
                    record.generation,
                    record.flags,
                    record.stamp_hash.as_ref().map(|hash| &hash[..]),
                    record.built_run,
                ],
                |row| row.get(0),
            )
            .map_err(|err| self.error(err))?;
        record.id = Some(id);
        Ok(id)
    }

    /// Records that the file with row id `id` was seen with `stamp` at
    /// `seen_ns`, when its record still contains that stamp. A record that
    /// another run changed meanwhile stays as that run wrote it.
    pub fn refresh_seen(&self, id: i64, stamp: &Stamp, seen_ns: i64) -> Result<()> {
        let mut statement = self
            .tx
            .prepare_cached(
                "UPDATE files SET seen_ns = ?1 WHERE id = ?2 AND kind = ?3 AND ino = ?4 AND size = ?5 \
                 AND mtime_ns = ?6 AND ctime_ns = ?7 AND seen_ns < ?1",
            )
            .map_err(|err| self.error(err))?;
        statement
            .execute(params![
                seen_ns,
                id,
                stamp.kind as i64,
                stamp.ino as i64,
                stamp.size as i64,
                stamp.mtime_ns,
                stamp.ctime_ns
            ])
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Replaces the dependencies of a target: `(dependency id, kind, generation)`.
    pub fn set_deps(&self, target: i64, deps: &[(i64, DepKind, i64)]) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM deps WHERE target = ?1")
            .and_then(|mut statement| statement.execute(params![target]))
            .map_err(|err| self.error(err))?;
        let mut insert = self
            .tx
            .prepare_cached("INSERT INTO deps (target, seq, dep, kind, generation) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(|err| self.error(err))?;
        for (seq, (dep, kind, generation)) in deps.iter().enumerate() {
            insert
                .execute(params![target, seq as i64, dep, *kind as i64, generation])
                .map_err(|err| self.error(err))?;
        }
        Ok(())
    }

    /// Stores the log of a target's build; `live` names the file that
    /// receives it while the build runs.
    pub fn put_log(&self, target: i64, log: &LogRecord) -> Result<()> {
        let live = log.live.as_ref().map(|path| path.as_os_str().as_bytes());
        self.tx
            .prepare_cached(
                "INSERT INTO logs (target, run, content, children, live) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(target) DO UPDATE SET run = ?2, content = ?3, children = ?4, live = ?5",
            )
            .and_then(|mut statement| {
                statement.execute(params![target, log.run, log.content, encode_children(&log.children), live])
            })
            .map(|_| ())
            .map_err(|err| self.error(err))
    }

    /// Records the start of a run and returns its id.
    pub fn start_run(&self, pid: u32, started_ns: i64, startdir: &Path, command: &str) -> Result<i64> {
        self.tx
            .execute(
                "INSERT INTO runs (pid, started_ns, startdir, command) VALUES (?1, ?2, ?3, ?4)",
                params![pid, started_ns, key_bytes(startdir), command],
            )
            .map_err(|err| self.error(err))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run: i64, finished_ns: i64, status: i32) -> Result<()> {
        self.tx
            .execute("UPDATE runs SET finished_ns = ?2, status = ?3 WHERE id = ?1", params![run, finished_ns, status])
            .map(|_| ())
            .map_err(|err| self.error(err))
    }
}

fn key_bytes(key: &Path) -> &[u8] {
    key.as_os_str().as_bytes()
}

fn read_hash(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<Hash>> {
    let bytes: Option<Vec<u8>> = row.get(index)?;
    Ok(bytes.and_then(|bytes| Hash::try_from(bytes.as_slice()).ok()))
}

fn read_file_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: Some(row.get(0)?),
        is_target: row.get(1)?,
        stamp: Stamp {
            kind: FileKind::from_code(row.get(2)?),
            ino: row.get::<_, i64>(3)? as u64,
            size: row.get::<_, i64>(4)? as u64,
            mtime_ns: row.get(5)?,
            ctime_ns: row.get(6)?,
        },
        seen_ns: row.get(7)?,
        hash: read_hash(row, 8)?,
        generation: row.get(9)?,
        flags: row.get(10)?,
        stamp_hash: read_hash(row, 11)?,
        built_run: row.get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileRecord {
        FileRecord {
            id: None,
            is_target: true,
            stamp: Stamp { kind: FileKind::File, ino: 7, size: 3, mtime_ns: 11, ctime_ns: 12 },
            seen_ns: 13,
            hash: Some([5; 32]),
            generation: 2,
            flags: flags::ALWAYS,
            stamp_hash: None,
            built_run: 1,
        }
    }

    #[test]
    fn record_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::create(dir.path()).expect("create");
        let mut record = sample();
        let key = Path::new("sub/two  spaces wörld.o");
        store.write(|w| w.put_file(key, &mut record)).expect("write");
        assert!(record.id.is_some());
        assert_eq!(store.file(key).expect("load"), Some(record.clone()));
        assert_eq!(store.file(Path::new("other")).expect("load"), None);
        record.generation = 3;
        store.write(|w| w.put_file(key, &mut record)).expect("update");
        assert_eq!(store.file(key).expect("load").map(|r| r.generation), Some(3));
    }

    #[test]
    fn deps_keep_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::create(dir.path()).expect("create");
        let mut target = sample();
        let mut b = FileRecord::default();
        let mut a = FileRecord::default();
        store
            .write(|w| {
                let t = w.put_file(Path::new("t"), &mut target)?;
                let b_id = w.put_file(Path::new("b"), &mut b)?;
                let a_id = w.put_file(Path::new("a"), &mut a)?;
                w.set_deps(t, &[(b_id, DepKind::IfCreate, 0), (a_id, DepKind::IfChange, 4)])
            })
            .expect("write");
        let deps = store.deps(target.id.expect("id")).expect("deps");
        assert_eq!(deps.len(), 2);
        assert_eq!(deps[0].key, Path::new("b"));
        assert_eq!(deps[0].kind, DepKind::IfCreate);
        assert_eq!(deps[1].key, Path::new("a"));
        assert_eq!(deps[1].generation, 4);
    }

    #[test]
    fn garbage_file_is_reported_not_wiped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(dir.path());
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let garbage = vec![b'x'; 4096];
        std::fs::write(&path, &garbage).expect("write");
        let err = Store::create(dir.path()).err().expect("must fail");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("damaged"));
        assert_eq!(std::fs::read(&path).expect("read"), garbage);
    }

    #[test]
    fn newer_schema_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::create(dir.path()).expect("create"));
        let conn = Connection::open(db_path(dir.path())).expect("open");
        conn.execute_batch("PRAGMA user_version = 99").expect("bump");
        drop(conn);
        let err = Store::create(dir.path()).err().expect("must fail");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
        let err = Store::open_read_only(dir.path()).err().expect("must fail");
        assert!(matches!(err, StoreError::TooNew { .. }));
    }

    #[test]
    fn log_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::create(dir.path()).expect("create");
        let mut target = sample();
        let log = LogRecord {
            run: 3,
            content: b"compiling\nwarning: x\n".to_vec(),
            children: vec![(10, PathBuf::from("a.o")), (20, PathBuf::from("sub/b c.o"))],
            live: None,
        };
        let id = store.write(|w| w.put_file(Path::new("prog"), &mut target)).expect("write");
        store.write(|w| w.put_log(id, &log)).expect("write log");
        assert_eq!(store.log(id).expect("read"), Some(log));
        assert_eq!(store.log(id + 1).expect("read"), None);
    }

    #[test]
    fn version_one_database_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(dir.path());
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(&format!("{SCHEMA} PRAGMA user_version = 1;")).expect("old schema");
        conn.execute("INSERT INTO files (path, is_target) VALUES (x'61', 1)", []).expect("insert");
        drop(conn);
        let store = Store::create(dir.path()).expect("migrate");
        assert_eq!(store.user_version().expect("version"), SCHEMA_VERSION);
        assert!(store.file(Path::new("a")).expect("load").is_some_and(|record| record.is_target));
        assert_eq!(store.log(1).expect("logs table"), None);
    }

    #[test]
    fn concurrent_creation_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().to_path_buf();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let top = top.clone();
                std::thread::spawn(move || Store::create(&top).map(|_| ()).map_err(|err| err.to_string()))
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().expect("thread"), Ok(()));
        }
    }

    #[test]
    fn missing_database_is_not_created_by_readers() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Store::open_existing(dir.path()).expect("open").is_none());
        assert!(Store::open_read_only(dir.path()).expect("open").is_none());
        assert!(!dir.path().join(STATE_DIR).exists());
    }

    #[test]
    fn keys_lists_targets_and_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::create(dir.path()).expect("create");
        let mut target = sample();
        let mut source = FileRecord { stamp: target.stamp, ..FileRecord::default() };
        let mut missing = FileRecord::default();
        let mut virtual_target = FileRecord { is_target: true, ..FileRecord::default() };
        store
            .write(|w| {
                w.put_file(Path::new("out"), &mut target)?;
                w.put_file(Path::new("in.c"), &mut source)?;
                w.put_file(Path::new("clean"), &mut virtual_target)?;
                w.put_file(Path::new("gone"), &mut missing)
            })
            .expect("write");
        assert_eq!(store.keys(true).expect("targets"), vec![PathBuf::from("clean"), PathBuf::from("out")]);
        assert_eq!(store.keys(false).expect("sources"), vec![PathBuf::from("in.c")]);
    }
}
