//! Reading the files of a DAG folder without trusting them. DAG files and the files they
//! reference (`sql_file`) must be regular files of bounded size: a FIFO or a device is
//! never opened (opening a FIFO blocks until a writer comes, `/dev/zero` never ends), and
//! nothing is read past its limit even if the file grows or lies about its size (`/proc`).
//! A referenced file must also stay inside the DAG folder once symlinks are resolved, so a
//! DAG cannot copy `/proc/self/environ` or `../../etc/passwd` into what viewers see.
//!
//! These are blocking calls: async callers run them on a blocking thread.

use std::fs::{File, Metadata};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest `sql_file` by default (the `max_sql_file_bytes` setting): a SQL script is a
/// few KiB; every byte of it is stored in the DAG's definition and sent to the UI.
pub const DEFAULT_MAX_SQL_FILE_BYTES: u64 = 1024 * 1024;

/// Why a file was not read. Displays without the path: callers say which file it was.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file ({kind}); only regular files are read")]
    NotRegular { kind: &'static str },
    #[error("file is {} bytes; the limit is {limit} bytes ({setting})", size.map_or_else(|| format!("more than {limit}"), |s| s.to_string()))]
    TooBig {
        /// `None` when the file claimed to be smaller and grew while it was read.
        size: Option<u64>,
        limit: u64,
        /// Which limit, as the message should name it.
        setting: &'static str,
    },
    #[error("absolute paths are not allowed; the path is relative to the DAG file's folder")]
    Absolute,
    #[error("does not exist")]
    Missing,
    #[error("leads outside the DAG folder {root} (symlinks are followed); only files inside it are read")]
    Outside { root: String },
    #[error("not valid UTF-8 (byte 0x{byte:02x} at offset {offset})")]
    NotUtf8 { byte: u8, offset: usize },
}

/// Reads a regular file of at most `limit` bytes; `setting` names the limit in the error.
/// The type and size are checked before the file is opened, and again on the open handle
/// (the file may be swapped in between), which is opened non-blocking so that even a FIFO
/// swapped in at that moment cannot block.
pub fn read_regular_file(
    path: &Path,
    limit: u64,
    setting: &'static str,
) -> Result<Vec<u8>, FileError> {
    let too_big = |size| FileError::TooBig {
        size,
        limit,
        setting,
    };
    let check = |metadata: &Metadata| {
        if !metadata.is_file() {
            return Err(FileError::NotRegular {
                kind: file_kind(&metadata.file_type()),
            });
        }
        if metadata.len() > limit {
            return Err(too_big(Some(metadata.len())));
        }
        Ok(())
    };
    check(&std::fs::metadata(path)?)?;
    let file = open_nonblocking(path)?;
    let metadata = file.metadata()?;
    check(&metadata)?;
    let capacity = usize::try_from(metadata.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(None));
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// What a file that is not a regular file is, for error messages.
pub fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else {
        "an unknown kind of file"
    }
}

/// The DAG folder, resolved once: the files DAGs reference must lie inside it.
#[derive(Debug, Clone)]
pub struct DagFolder {
    /// Canonical (absolute, symlinks resolved).
    root: PathBuf,
    /// The largest referenced file read.
    max_file_bytes: u64,
}

impl DagFolder {
    /// The folder at `root` (which must exist). `max_file_bytes` bounds every referenced
    /// file (the `max_sql_file_bytes` setting).
    pub fn new(root: &Path, max_file_bytes: u64) -> std::io::Result<DagFolder> {
        Ok(DagFolder {
            root: std::fs::canonicalize(root)?,
            max_file_bytes,
        })
    }

    /// The canonical path of the folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `path` (a file or folder that exists) lies inside this folder.
    pub fn contains(&self, path: &Path) -> bool {
        std::fs::canonicalize(path).is_ok_and(|p| p.starts_with(&self.root))
    }

    /// Reads `relative`, a path written in the DAG file `dag_file` (e.g. a `sql_file`):
    /// resolved against the DAG file's folder, it must stay inside the DAG folder after
    /// symlinks are resolved, be a regular file within the limit, and be UTF-8.
    pub fn read_referenced(&self, dag_file: &Path, relative: &str) -> Result<String, FileError> {
        let relative = Path::new(relative);
        if relative.has_root() {
            return Err(FileError::Absolute);
        }
        let base = dag_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let resolved = match std::fs::canonicalize(base.join(relative)) {
            Ok(path) => path,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(FileError::Missing)
            }
            Err(err) => return Err(err.into()),
        };
        if !resolved.starts_with(&self.root) {
            return Err(FileError::Outside {
                root: self.root.display().to_string(),
            });
        }
        let bytes = read_regular_file(
            &resolved,
            self.max_file_bytes,
            "the max_sql_file_bytes setting",
        )?;
        String::from_utf8(bytes).map_err(|err| {
            let offset = err.utf8_error().valid_up_to();
            FileError::NotUtf8 {
                byte: err.as_bytes().get(offset).copied().unwrap_or_default(),
                offset,
            }
        })
    }
}
