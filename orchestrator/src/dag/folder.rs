//! A folder of DAG files: each parsed on its own, so one bad file never hides the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use updraft_operators::Registry;

use super::Dag;
use super::parse::{Diagnostic, parse_dag};

/// One file that parsed.
#[derive(Debug, Clone)]
pub struct LoadedDag {
    pub path: PathBuf,
    /// The file's text, as parsed (stored so the UI can show the source).
    pub source: String,
    /// Hex SHA-256 of the file's bytes: unchanged files are skipped.
    pub source_hash: String,
    pub dag: Dag,
}

/// A file that did not: all its diagnostics.
#[derive(Debug, Clone)]
pub struct ImportError {
    pub path: PathBuf,
    pub source_hash: String,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Default)]
pub struct FolderLoad {
    pub dags: Vec<LoadedDag>,
    pub errors: Vec<ImportError>,
}

/// Every `*.yaml`/`*.yml` file under `folder` (recursively, hidden entries skipped, in path
/// order), parsed; a `dag_id` defined in two files is an error on both, naming the other.
pub fn load_folder(folder: &Path, registry: &Registry) -> FolderLoad {
    load_folder_cached(folder, registry, &mut ParseCache::default())
}

/// What a file's metadata says about its content: while it is the same, so is the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified_ns: i64,
    changed_ns: i64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: metadata.len(),
            modified_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
            changed_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            inode: metadata.ino(),
        })
    }
}

/// The last parse of each file, kept between scans of a folder: a file whose size, times and
/// inode are unchanged is not read or parsed again.
#[derive(Default)]
pub struct ParseCache {
    files: BTreeMap<PathBuf, (FileStamp, Result<LoadedDag, ImportError>)>,
    parsed: usize,
}

impl ParseCache {
    /// Files read and parsed by the last scan (the others came from the cache).
    pub fn parsed_last_scan(&self) -> usize {
        self.parsed
    }
}

/// [`load_folder`], parsing only the files that changed since `cache` saw them.
pub fn load_folder_cached(
    folder: &Path,
    registry: &Registry,
    cache: &mut ParseCache,
) -> FolderLoad {
    let mut load = FolderLoad::default();
    let mut files = Vec::new();
    if let Err(error) = collect_files(folder, &mut files) {
        load.errors.push(io_error(folder, &error));
        return load;
    }
    files.sort();
    cache.parsed = 0;
    let mut seen = BTreeMap::new();
    for path in files {
        let stamp = FileStamp::of(&path);
        let result = match (stamp, cache.files.remove(&path)) {
            (Some(stamp), Some((cached, result))) if cached == stamp => result,
            _ => {
                cache.parsed += 1;
                match read_dag_file(&path) {
                    Ok(bytes) => load_bytes(&path, &bytes, registry),
                    Err(error) => Err(io_error(&path, &error)),
                }
            }
        };
        match &result {
            Ok(dag) => load.dags.push(dag.clone()),
            Err(error) => load.errors.push(error.clone()),
        }
        if let Some(stamp) = stamp {
            seen.insert(path, (stamp, result));
        }
    }
    // Files gone from the folder leave the cache too.
    cache.files = seen;
    reject_duplicate_ids(&mut load);
    load
}

/// Files and folders given on a command line: folders are walked, files read as they are.
pub fn load_paths(paths: &[PathBuf], registry: &Registry) -> FolderLoad {
    let mut load = FolderLoad::default();
    for path in paths {
        if path.is_dir() {
            let mut part = load_folder(path, registry);
            load.dags.append(&mut part.dags);
            load.errors.append(&mut part.errors);
        } else {
            match read_dag_file(path) {
                Ok(bytes) => match load_bytes(path, &bytes, registry) {
                    Ok(dag) => load.dags.push(dag),
                    Err(error) => load.errors.push(error),
                },
                Err(error) => load.errors.push(io_error(path, &error)),
            }
        }
    }
    reject_duplicate_ids(&mut load);
    load
}

/// The largest DAG file read: a bigger one (or a link to `/dev/zero`) is an import error, not
/// memory exhausted.
pub const MAX_DAG_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A DAG file's bytes: only a regular file (a FIFO would block the reader, a device never
/// end), and at most [`MAX_DAG_FILE_BYTES`] (checked while reading, too: a file may grow).
pub fn read_dag_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let refuse = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(refuse(
            "not a regular file (a FIFO, socket or device): skipped".into(),
        ));
    }
    let too_large = |bytes: u64| {
        refuse(format!(
            "{bytes} bytes: larger than the {MAX_DAG_FILE_BYTES}-byte limit for a DAG file"
        ))
    };
    if metadata.len() > MAX_DAG_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_DAG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DAG_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// One file (for the DAG processor's file events). A leading byte-order mark is ignored; a NUL
/// character is an error at its position (YAML does not allow it, and the parser would stop
/// there without a word).
pub fn load_file(path: &Path, source: &str, registry: &Registry) -> Result<LoadedDag, ImportError> {
    let source_hash = sha256_hex(source.as_bytes());
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if let Some(at) = source.find('\0') {
        let before = &source[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        return Err(ImportError {
            path: path.to_path_buf(),
            source_hash,
            diagnostics: vec![diagnostic(
                path,
                line,
                column,
                "a NUL character (byte 0x00) is not allowed in a DAG file".into(),
            )],
        });
    }
    match parse_dag(&path.display().to_string(), source, registry) {
        Ok(dag) => Ok(LoadedDag {
            path: path.to_path_buf(),
            source: source.to_string(),
            source_hash,
            dag,
        }),
        Err(diagnostics) => Err(ImportError {
            path: path.to_path_buf(),
            source_hash,
            diagnostics,
        }),
    }
}

fn load_bytes(path: &Path, bytes: &[u8], registry: &Registry) -> Result<LoadedDag, ImportError> {
    match std::str::from_utf8(bytes) {
        Ok(source) => load_file(path, source, registry),
        Err(error) => Err(ImportError {
            path: path.to_path_buf(),
            source_hash: sha256_hex(bytes),
            diagnostics: vec![diagnostic(
                path,
                1,
                1,
                format!("the file is not UTF-8: {error}"),
            )],
        }),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn collect_files(folder: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect_files(&path, files)?;
        } else if matches!(
            path.extension().and_then(|ext| ext.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

fn io_error(path: &Path, error: &std::io::Error) -> ImportError {
    ImportError {
        path: path.to_path_buf(),
        source_hash: String::new(),
        diagnostics: vec![diagnostic(path, 1, 1, format!("cannot read: {error}"))],
    }
}

fn diagnostic(path: &Path, line: usize, column: usize, message: String) -> Diagnostic {
    Diagnostic {
        file: path.display().to_string(),
        line,
        column,
        message,
    }
}

/// Moves every DAG whose id is also defined in another file to the errors.
fn reject_duplicate_ids(load: &mut FolderLoad) {
    let mut by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, loaded) in load.dags.iter().enumerate() {
        by_id
            .entry(loaded.dag.dag_id.as_str())
            .or_default()
            .push(index);
    }
    let mut rejected: Vec<(usize, ImportError)> = Vec::new();
    for (dag_id, indexes) in by_id.iter().filter(|(_, indexes)| indexes.len() > 1) {
        for &index in indexes {
            let loaded = &load.dags[index];
            let others: Vec<String> = indexes
                .iter()
                .filter(|other| **other != index)
                .map(|other| load.dags[*other].path.display().to_string())
                .collect();
            let (line, column) = dag_id_position(&loaded.source);
            rejected.push((
                index,
                ImportError {
                    path: loaded.path.clone(),
                    source_hash: loaded.source_hash.clone(),
                    diagnostics: vec![diagnostic(
                        &loaded.path,
                        line,
                        column,
                        format!(
                            "duplicate dag_id `{dag_id}`: also defined in {}",
                            others.join(", ")
                        ),
                    )],
                },
            ));
        }
    }
    rejected.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
    for (index, error) in rejected {
        load.dags.remove(index);
        load.errors.push(error);
    }
    load.errors.sort_by(|a, b| a.path.cmp(&b.path));
}

/// Where the value of the top-level `dag_id:` is (the file parsed, so it is there).
fn dag_id_position(source: &str) -> (usize, usize) {
    for (number, line) in source.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("dag_id")
            && let Some(value) = rest.trim_start().strip_prefix(':')
        {
            let column = line.len() - value.trim_start().len() + 1;
            return (number + 1, column);
        }
    }
    (1, 1)
}

/// What `updraft dags test|show` mean by `DAG_ID_OR_FILE`: an existing file is parsed as is;
/// anything else is a dag_id looked up in `folder`. `Err` lists the file's diagnostics, or says
/// the id is unknown.
pub fn resolve_dag(
    id_or_file: &str,
    folder: &Path,
    registry: &Registry,
) -> Result<LoadedDag, Vec<String>> {
    let path = Path::new(id_or_file);
    if path.is_file() {
        let bytes = read_dag_file(path)
            .map_err(|error| vec![format!("{}: cannot read: {error}", path.display())])?;
        return load_bytes(path, &bytes, registry)
            .map_err(|error| error.diagnostics.iter().map(ToString::to_string).collect());
    }
    let mut load = load_folder(folder, registry);
    if let Some(index) = load
        .dags
        .iter()
        .position(|loaded| loaded.dag.dag_id == id_or_file)
    {
        return Ok(load.dags.swap_remove(index));
    }
    // The DAG may be in a file that failed to parse: show that file's errors.
    let mentioned: Vec<String> = load
        .errors
        .iter()
        .filter(|error| {
            std::fs::read_to_string(&error.path).is_ok_and(|text| text.contains(id_or_file))
        })
        .flat_map(|error| error.diagnostics.iter().map(ToString::to_string))
        .collect();
    if mentioned.is_empty() {
        Err(vec![format!(
            "no DAG with id `{id_or_file}` in {} (and no such file)",
            folder.display()
        )])
    } else {
        Err(mentioned)
    }
}
