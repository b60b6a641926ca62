//! The model file as bytes: a safetensors container whose header carries kandle's entries, a crc32
//! over everything else in the file, the format version check, and the atomic write (temporary file,
//! fsync, rename) that leaves the previous file intact if the process dies mid-save.

use crate::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The value of the header entry `format`: what makes a safetensors file a kandle file.
pub const FORMAT: &str = "kandle";
/// The newest format version this build reads and the one it writes (2: tensors and random
/// streams keyed by layer name, functional models; 1: keyed by layer position, Sequential only).
pub const FORMAT_VERSION: u64 = 2;

/// A float32 tensor in host memory, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What a file holds: string header entries (`format`, `format_version` and `checksum` are managed
/// here) and named tensors.
#[derive(Debug, Default)]
pub struct Contents {
    pub meta: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, HostTensor>,
    /// Set by `read` when the stored checksum disagrees; reported by `verify` once the caller has
    /// had the chance to give a more specific error (an unknown layer, a mismatched shape).
    checksum_error: Option<String>,
}

impl Contents {
    /// Fails if the checksum did not match: bytes changed after kandle wrote the file.
    pub fn verify(&self, path: &Path) -> Result<()> {
        match &self.checksum_error {
            Some(what) => Err(corrupt(path, what)),
            None => Ok(()),
        }
    }
}

/// `Could not load '<path>': <what>`, the one shape of every load error.
pub fn corrupt(path: &Path, what: &str) -> Error {
    Error::Value(format!("Could not load '{}': {what}", path.display()))
}

/// crc32 over the header entries (but `checksum`) and the tensors, each in name order, with their
/// dtypes and shapes: any byte changed outside JSON whitespace changes it or breaks the container.
fn checksum(meta: &BTreeMap<String, String>, tensors: &[(&str, Dtype, &[usize], &[u8])]) -> String {
    let mut h = crc32fast::Hasher::new();
    for (k, v) in meta.iter().filter(|(k, _)| k.as_str() != "checksum") {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    let mut sorted = tensors.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape, data) in sorted {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(dtype.to_string().as_bytes());
        h.update(&[0]);
        h.update(&(shape.len() as u64).to_le_bytes());
        shape.iter().for_each(|d| h.update(&(*d as u64).to_le_bytes()));
        h.update(data);
    }
    format!("crc32:{:08x}", h.finalize())
}

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The file's bytes, with `format`, `format_version` and `checksum` filled in.
pub fn encode(contents: &Contents) -> Result<Vec<u8>> {
    let mut meta = contents.meta.clone();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("format_version".into(), FORMAT_VERSION.to_string());
    let bytes: Vec<(&str, Vec<u8>, &[usize])> =
        contents.tensors.iter().map(|(k, t)| (k.as_str(), f32_bytes(&t.data), t.shape.as_slice())).collect();
    let listed: Vec<_> = bytes.iter().map(|(k, b, s)| (*k, Dtype::F32, *s, b.as_slice())).collect();
    meta.insert("checksum".into(), checksum(&meta, &listed));
    let views = bytes
        .iter()
        .map(|(k, b, s)| Ok((*k, safetensors::tensor::TensorView::new(Dtype::F32, s.to_vec(), b)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Runtime(format!("could not encode the model file: {e}")))?;
    safetensors::serialize(views, Some(meta.into_iter().collect()))
        .map_err(|e| Error::Runtime(format!("could not encode the model file: {e}")))
}

/// Parses and checks a file's bytes: container, `format`, `format_version`, dtypes; the checksum is
/// compared here but reported by `Contents::verify`.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Contents> {
    if bytes.is_empty() {
        return Err(corrupt(path, "the file is empty"));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        corrupt(path, &format!("not a kandle model file, or a truncated one (its safetensors container is invalid: {e})"))
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(path, &e.to_string()))?;
    let meta: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(corrupt(path, &format!("not a kandle model file (its header says format '{other}')"))),
        None => return Err(corrupt(path, "not a kandle model file (a safetensors file without kandle's header)")),
    }
    let version = meta.get("format_version").map(String::as_str).unwrap_or("");
    match version.parse::<u64>() {
        Ok(v) if v <= FORMAT_VERSION && v > 0 => {}
        Ok(v) if v > FORMAT_VERSION => {
            return Err(corrupt(
                path,
                &format!(
                    "it was written in kandle format version {v}, newer than this kandle reads (up to \
                     {FORMAT_VERSION}); upgrade kandle to load it"
                ),
            ))
        }
        _ => return Err(corrupt(path, &format!("invalid format_version {version:?} in its header"))),
    }
    let mut listed = Vec::new();
    let mut tensors = BTreeMap::new();
    let views = st.tensors();
    for (name, view) in &views {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(path, &format!("tensor '{name}' has dtype {}, kandle files hold F32 only", view.dtype())));
        }
        listed.push((name.as_str(), view.dtype(), view.shape(), view.data()));
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.insert(name.clone(), HostTensor { shape: view.shape().to_vec(), data });
    }
    let checksum_error = match meta.get("checksum") {
        None => Some("its checksum is missing".to_string()),
        Some(stored) if *stored != checksum(&meta, &listed) => {
            Some(format!("checksum mismatch (stored {stored}): the file is corrupted or was modified"))
        }
        Some(_) => None,
    };
    Ok(Contents { meta, tensors, checksum_error })
}

/// Reads and decodes `path`; a missing file is a `ValueError`, as in Keras's `load_model`.
pub fn read(path: &Path) -> Result<Contents> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => corrupt(path, "file not found"),
        _ => corrupt(path, &e.to_string()),
    })?;
    decode(&bytes, path)
}

/// Encodes and writes atomically: a reader (or a process killed meanwhile) sees the old file or the
/// new one, never a mix.
pub fn write(path: &Path, contents: &Contents) -> Result<()> {
    let bytes = encode(contents)?;
    write_atomic(path, &bytes)
}

/// Temporary file in the target's folder (a rename is atomic only within one file system), fsync,
/// rename over the target, fsync the folder so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |e: std::io::Error| Error::Io(format!("Could not save to '{}': {e}", path.display()));
    // Write through a symlink to its target instead of replacing the link.
    let target: PathBuf = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map_err(io_err)?,
        _ => path.to_path_buf(),
    };
    let name = target.file_name().ok_or_else(|| io_err(std::io::Error::other("the path has no file name")))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        // Not every platform can open a folder for fsync; the data itself is already synced.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        remove_stale_temporaries(&dir, &name.to_string_lossy());
    }
    result.map_err(io_err)
}

/// Temporary files of earlier saves to the same path whose process is gone (killed mid-save): a
/// later successful save cleans them up. A live process's temporary is left to it.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid as u32 != std::process::id() && !process_alive(pid) {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: kill with signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contents {
        let mut c = Contents::default();
        c.meta.insert("content".into(), "weights".into());
        c.tensors.insert("a".into(), HostTensor { shape: vec![2, 3], data: (0..6).map(|i| i as f32 * 0.5).collect() });
        c.tensors.insert("b".into(), HostTensor { shape: vec![1], data: vec![-1.25] });
        c
    }

    #[test]
    fn encode_decode_round_trips_and_verifies() {
        let p = Path::new("x.kandle");
        let bytes = encode(&sample()).unwrap();
        let back = decode(&bytes, p).unwrap();
        back.verify(p).unwrap();
        assert_eq!(back.tensors, sample().tensors);
        assert_eq!(back.meta["format"], "kandle");
        assert_eq!(back.meta["format_version"], FORMAT_VERSION.to_string());
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let p = Path::new("x.kandle");
        let bytes = encode(&sample()).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            // Flipping a trailing pad space gives '!' (invalid JSON); nothing flips silently.
            let detected = decode(&b, p).and_then(|c| c.verify(p)).is_err();
            assert!(detected, "flip at byte {i} of {} went unnoticed", bytes.len());
        }
    }

    #[test]
    fn truncation_is_an_error_naming_the_file() {
        let p = Path::new("dir/m.kandle");
        let bytes = encode(&sample()).unwrap();
        for cut in [0, 1, 7, 8, 9, bytes.len() / 2, bytes.len() - 1] {
            let e = decode(&bytes[..cut], p).unwrap_err().to_string();
            assert!(e.contains("dir/m.kandle"), "{e}");
        }
    }

    #[test]
    fn newer_versions_and_foreign_files_are_refused() {
        let p = Path::new("m.kandle");
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "kandle".to_string());
        meta.insert("format_version".to_string(), (FORMAT_VERSION + 1).to_string());
        let empty: Vec<(&str, safetensors::tensor::TensorView)> = vec![];
        let newer = safetensors::serialize(empty.clone(), Some(meta.clone())).unwrap();
        assert!(decode(&newer, p).unwrap_err().to_string().contains("newer"));
        meta.insert("format".to_string(), "pt".to_string());
        let foreign = safetensors::serialize(empty, Some(meta)).unwrap();
        assert!(decode(&foreign, p).unwrap_err().to_string().contains("not a kandle model file"));
        assert!(decode(b"PK\x03\x04garbage-garbage", p).unwrap_err().to_string().contains("not a kandle model file"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("kandle-container-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.kandle");
        write(&p, &sample()).unwrap();
        let mut c = sample();
        c.tensors.get_mut("b").unwrap().data[0] = 7.0;
        write(&p, &c).unwrap();
        assert_eq!(read(&p).unwrap().tensors["b"].data, vec![7.0]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert!(matches!(write(&dir, &c), Err(Error::Io(_))));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        // A process killed mid-save left its temporary; the next save removes it (pid 2^22 + 1 is
        // above Linux's pid limit, so no such process is alive).
        let stale = dir.join(".m.kandle.tmp-4194305-0");
        fs::write(&stale, b"partial").unwrap();
        write(&p, &c).unwrap();
        assert!(!stale.exists(), "the dead process's temporary file is still there");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
