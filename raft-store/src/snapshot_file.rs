//! A group's snapshot as a file: built from a consistent RocksDB view into an SST file,
//! streamed to a follower in bounded chunks, and installed there by ingesting the file. No step
//! holds the group's state in memory, so a shard of any size moves with bounded memory.
//!
//! Files live in the `snapshots` directory inside the RocksDB directory:
//! * `g<group>-<index>.sst` — a group's current snapshot (its name is stored with the meta);
//! * `tmp-…` — a snapshot being built, renamed into place once complete;
//! * `incoming-g<group>-from<node>.sst` — a snapshot being received from node `<node>`.
//!
//! A group with no state has an empty (zero-byte) file: RocksDB cannot write an SST of no keys.

use std::fs::File;
use std::io;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use rocksdb::DB;
use rocksdb::SstFileWriter;

use crate::GroupId;
use crate::db::bounded_read_opts;
use crate::db::cf;
use crate::db::cf_options;
use crate::db::scan;
use crate::error::db_err;
use crate::keys::CF_STATE;
use crate::keys::group_prefix;
use crate::keys::prefix_upper_bound;

/// How much of a snapshot one peer message carries (small in unit tests, so that every
/// snapshot there travels in several chunks).
pub(crate) const CHUNK_SIZE: usize = if cfg!(test) { 64 } else { 1 << 20 };

/// An open snapshot file. Opened before it is read, so a newer snapshot replacing (unlinking)
/// it meanwhile does not cut a transfer short.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFile {
    pub(crate) path: PathBuf,
    file: Arc<File>,
}

impl SnapshotFile {
    pub(crate) fn open(path: PathBuf) -> io::Result<Self> {
        let file = Arc::new(File::open(&path)?);
        Ok(SnapshotFile { path, file })
    }

    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Up to [`CHUNK_SIZE`] bytes from `offset` (fewer at the end; none past it).
    pub(crate) fn read_chunk(&self, offset: u64) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0; CHUNK_SIZE];
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            let n = self
                .file
                .read_at(&mut chunk[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        chunk.truncate(filled);
        Ok(chunk)
    }
}

/// The directory of snapshot files of the database at `db`.
pub(crate) fn directory(db: &DB) -> io::Result<PathBuf> {
    let dir = db.path().join("snapshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Deletes the `tmp-…` files of builds a crash interrupted; called on open, before any build.
pub(crate) fn remove_unfinished_builds(db: &DB) -> io::Result<()> {
    for entry in std::fs::read_dir(directory(db)?)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("tmp-") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The file name of `group`'s snapshot at log `index`.
pub(crate) fn file_name(group: GroupId, index: u64) -> String {
    format!("g{}-{index}.sst", group.0)
}

/// The file a snapshot of `group` from node `from` is received into.
pub(crate) fn incoming_path(db: &DB, group: GroupId, from: u64) -> io::Result<PathBuf> {
    Ok(directory(db)?.join(format!("incoming-g{}-from{from}.sst", group.0)))
}

/// Writes every state key of `group` visible in `view` (full keys, group prefix included, in
/// key order) into `path` as an SST file, or an empty file when the group has no state.
pub(crate) fn write_sst(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    group: GroupId,
    path: &Path,
) -> io::Result<()> {
    let state_cf = cf(db, CF_STATE)?;
    let prefix = group_prefix(group);
    let end = prefix_upper_bound(&prefix);
    let options = cf_options();
    let mut writer: Option<SstFileWriter<'_>> = None;
    scan(
        view.raw_iterator_cf_opt(state_cf, bounded_read_opts(end.as_deref())),
        &prefix,
        end.as_deref(),
        |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            let w = match &mut writer {
                Some(w) => w,
                None => {
                    let w = SstFileWriter::create(&options);
                    w.open(path).map_err(db_err)?;
                    writer.insert(w)
                }
            };
            w.put(k, v).map_err(db_err)?;
            Ok(true)
        },
    )?;
    match writer {
        Some(mut w) => w.finish().map_err(db_err)?,
        None => drop(File::create(path)?),
    }
    File::open(path)?.sync_all()
}

/// Appends a received chunk at `offset` of the incoming file (created afresh at offset 0). A
/// chunk that does not continue the file is refused: the sender starts over.
pub(crate) fn append_chunk(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut file = if offset == 0 {
        File::create(path)?
    } else {
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        if len != offset {
            return Err(io::Error::other(format!(
                "snapshot chunk at {offset}, but {} holds {len} bytes",
                path.display()
            )));
        }
        file
    };
    file.write_all(data)
}

/// Makes a completely received file durable, and opens it.
pub(crate) fn finish_incoming(path: PathBuf) -> io::Result<SnapshotFile> {
    File::open(&path)?.sync_all()?;
    SnapshotFile::open(path)
}
