//! Crash-safe files: written whole to a temporary file, synced, then renamed
//! over the old one, so a kill -9 at any point leaves the old or the new
//! content, never a mix. The temporary name is fixed (`.NAME.tmp`): a file
//! left by a kill -9 before the rename is overwritten by the next write
//! instead of piling up (one agent writes each file).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `data` atomically (same directory, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// Like [`write_atomic`] without the fsyncs: for RAM files (status) that must
/// never be seen half-written but need not survive a power cut.
pub fn write_atomic_ram(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        fs::create_dir_all(d)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        crate::crashpoint!("persist-before-rename");
        fs::rename(&tmp, path)?;
        crate::crashpoint!("persist-after-rename");
        if let Some(d) = dir.filter(|_| sync) {
            File::open(d)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporaries() {
        let dir = std::env::temp_dir().join(format!("wgroam-persist-{}", std::process::id()));
        let path = dir.join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two, longer");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_temporary_left_by_a_crash_is_overwritten_not_kept() {
        let dir = std::env::temp_dir().join(format!("wgroam-persist-crash-{}", std::process::id()));
        let path = dir.join("state.json");
        fs::create_dir_all(&dir).unwrap();
        // What a kill -9 between create and rename leaves behind.
        fs::write(
            dir.join(".state.json.tmp"),
            b"half a file, much longer than the next one",
        )
        .unwrap();
        write_atomic(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
