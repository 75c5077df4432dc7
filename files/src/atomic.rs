//! Atomic file output: a file is either absent, its old version, or its
//! complete new version — never half written, whatever interrupts the run.
//!
//! The bytes go to a temporary file in the target's own directory (a rename
//! is only atomic within one file system), which is flushed and fsynced
//! before it is renamed over the target. On any error the temporary file is
//! removed and the target is left untouched.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes whatever `write` produces to `path` atomically, streaming through a
/// buffered writer, so large outputs need not be held in memory first.
///
/// If `write` fails, the target is left as it was and the error names `path`.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let io_err = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let (dir, tmp) = temp_path_for(path).map_err(io_err)?;
    match write_then_rename(&tmp, path, write) {
        Ok(()) => {
            sync_dir(&dir);
            Ok(())
        }
        Err(source) => {
            // Best effort: the original error is the one worth reporting.
            let _ = fs::remove_file(&tmp);
            Err(io_err(source))
        }
    }
}

/// Writes several files as one: after a crash at any moment, the next
/// [`recover_group`] leaves either all of their old versions or all of
/// their new ones (a checkpoint and the optimizer state that goes with it).
///
/// Each new file is first written whole (atomically) beside its target as
/// `.NAME.pending`; only then are they renamed into place, first file
/// first. So a pending first file means the new set may be incomplete and
/// the old set is intact; no pending first file but others pending means
/// the renames had begun and the rest are due.
pub fn write_group_atomic(files: &[(&Path, &[u8])]) -> Result<()> {
    for (path, bytes) in files {
        write_atomic(&pending_path(path), bytes)?;
    }
    for (path, _) in files {
        rename_pending(path)?;
    }
    Ok(())
}

/// Completes or undoes a [`write_group_atomic`] of `paths` that a crash
/// interrupted (see there); does nothing if none was.
pub fn recover_group(paths: &[&Path]) -> Result<()> {
    let Some(first) = paths.first() else {
        return Ok(());
    };
    let pending = |p: &Path| pending_path(p).exists();
    if pending(first) {
        for path in paths.iter().filter(|p| pending(p)) {
            let path = pending_path(path);
            fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
        }
    } else {
        for path in paths.iter().filter(|p| pending(p)) {
            rename_pending(path)?;
        }
    }
    Ok(())
}

fn pending_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".pending");
    path.with_file_name(name)
}

fn rename_pending(path: &Path) -> Result<()> {
    fs::rename(pending_path(path), path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    );
    Ok(())
}

/// Creates `dir` (and its parents) if needed and proves it writable by
/// creating and removing a probe file, so that a run can fail before it
/// spends any training time rather than when it saves the results.
pub fn check_writable_dir(dir: &Path) -> Result<()> {
    let not_writable = |source| Error::NotWritable {
        dir: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(not_writable)?;
    let probe = dir.join(format!(
        ".write-probe-{}-{}",
        std::process::id(),
        next_serial()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    let removed = fs::remove_file(&probe);
    written.and(removed).map_err(not_writable)
}

/// A process-wide counter, so two threads saving the same file at once never
/// share a temporary file.
fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// The target's directory and a hidden temporary name beside the target:
/// `dir/.NAME.tmp-PID-N`. The PID keeps concurrent processes apart; a
/// leftover from a killed process is recognisable by its name.
fn temp_path_for(path: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path (no file name)",
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{}", std::process::id(), next_serial()));
    let tmp = dir.join(tmp_name);
    Ok((dir, tmp))
}

fn write_then_rename<F>(tmp: &Path, path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    // Truncate rather than `create_new`: the name is unique among live
    // processes, so an existing file is a stale leftover of a dead one.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    // The data must be on disk before the rename makes it visible;
    // otherwise a crash could leave the new name pointing at empty blocks.
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

/// Makes the rename itself durable. Best effort: the new file is already
/// complete and in place, and some file systems refuse to fsync a directory.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_replaces_leaving_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(names_in(dir.path()), ["out.json"]);
    }

    #[test]
    fn failed_write_keeps_old_contents_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"partial new contents")?;
            Err(io::Error::other("interrupted"))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("model.bin") && msg.contains("interrupted"),
            "{msg}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["model.bin"]);
    }

    #[test]
    fn relative_bare_file_name_goes_to_current_dir() {
        let (dir, tmp) = temp_path_for(Path::new("log.json")).unwrap();
        assert_eq!(dir, Path::new("."));
        let tmp = tmp.to_string_lossy().into_owned();
        assert!(tmp.starts_with("./.log.json.tmp-"), "{tmp}");
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/out.json");
        let msg = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(msg.contains("no/such/dir/out.json"), "{msg}");
    }

    /// Every point where a group write can be cut short (after each of its
    /// file operations), then recovery: both files old, or both new.
    #[test]
    fn a_group_write_cut_short_anywhere_recovers_to_one_version() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            dir.path().join("net.safetensors"),
            dir.path().join("net.optim.safetensors"),
        );
        let steps: [&dyn Fn(); 4] = [
            &|| write_atomic(&pending_path(&a), b"new a").unwrap(),
            &|| write_atomic(&pending_path(&b), b"new b").unwrap(),
            &|| rename_pending(&a).unwrap(),
            &|| rename_pending(&b).unwrap(),
        ];
        for cut in 0..=steps.len() {
            write_group_atomic(&[(&a, b"old a"), (&b, b"old b")]).unwrap();
            steps[..cut].iter().for_each(|step| step());
            recover_group(&[&a, &b]).unwrap();
            let both = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
            let expected: (&[u8], &[u8]) = if cut >= 3 {
                (b"new a", b"new b")
            } else {
                (b"old a", b"old b")
            };
            assert_eq!(
                (both.0.as_slice(), both.1.as_slice()),
                expected,
                "cut after {cut} steps"
            );
            assert_eq!(
                names_in(dir.path()),
                ["net.optim.safetensors", "net.safetensors"],
                "cut after {cut} steps"
            );
        }
    }

    #[test]
    fn check_writable_dir_creates_and_leaves_it_empty() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        check_writable_dir(&out).unwrap();
        assert!(out.is_dir());
        assert!(names_in(&out).is_empty());
    }

    #[test]
    fn check_writable_dir_rejects_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, b"").unwrap();
        let msg = check_writable_dir(&file).unwrap_err().to_string();
        assert!(
            msg.contains("plain") && msg.contains("not writable"),
            "{msg}"
        );
    }
}
