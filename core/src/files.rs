//! Output files that never destroy what they should not, shared by every writer of the
//! library and the trainer:
//!
//! - [`write_file`] replaces a regular file atomically (a temporary `.NAME.tmp-PID` beside it,
//!   fsync, rename), writes through to a device node or FIFO (`--out /dev/null` stays a
//!   device), and follows a symlink to replace its target, never the link itself.
//! - [`remove_stale_temps`] removes the temporary files of writers that died (a kill during a
//!   checkpoint write); every write removes those of its own target.
//! - [`RunLock`] holds a run folder for one trainer (`run.lock` with PID and host); a lock of a
//!   dead process on this host is taken over.
//! - [`refuse_inputs_as_outputs`] refuses an output path that names an existing input file.
//! - [`read_input`] reads an input file only if it is a regular file of bounded size (a FIFO
//!   would block for ever, a device or a huge file would eat memory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What marks a temporary file: `.NAME.tmp-PID`.
const TMP_MARKER: &str = ".tmp-";
/// Most symlinks followed from one path.
const MAX_LINKS: usize = 40;
/// Name of the lock file in a run folder.
pub const LOCK_FILE: &str = "run.lock";

/// Writes `path` with `fill`: atomically for a regular or new file, straight through for a
/// device node or FIFO; a symlink is followed and its target written. A folder is an error.
pub fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let target = resolve_links(path)?;
    match fs::metadata(&target) {
        Ok(m) if m.is_dir() => Err(io::Error::other(format!(
            "{} is a folder, not a file",
            target.display()
        ))),
        Ok(m) if !m.is_file() => write_through(&target, fill),
        _ => replace_atomically(&target, fill),
    }
}

/// [`write_file`] with bytes already in memory (a safe `std::fs::write`).
pub fn write_bytes(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    write_file(path.as_ref(), |w| w.write_all(bytes.as_ref()))
}

/// The path a chain of symlinks at `path` ends in (the path itself when it is no link).
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::other(format!(
        "{}: more than {MAX_LINKS} symbolic links",
        path.display()
    )))
}

fn write_through(
    target: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut w = BufWriter::new(OpenOptions::new().write(true).open(target)?);
    fill(&mut w)?;
    w.flush()
}

fn replace_atomically(
    target: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", target.display())))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(".{}{TMP_MARKER}", name.to_string_lossy());
    remove_stale_temps_of(&dir, &prefix);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, target)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable; not every platform can open a folder, so best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The PID in a temporary file's name `.NAME.tmp-PID`.
fn temp_writer(name: &str) -> Option<u32> {
    let (_, pid) = name.strip_prefix('.')?.rsplit_once(TMP_MARKER)?;
    pid.parse().ok()
}

/// Removes the temporary files in `dir` whose writer is no longer running on this machine;
/// returns the files removed.
pub fn remove_stale_temps(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::read_dir(dir)?;
    Ok(remove_stale_temps_of(dir, "."))
}

/// [`remove_stale_temps`] for the temporaries whose names start with `prefix` (best effort).
fn remove_stale_temps_of(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_writer(&name).filter(|_| name.starts_with(prefix)) else {
            continue;
        };
        if !process_alive(pid) && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Whether process `pid` runs on this machine (true when that can't be told).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if Path::new("/proc/self").exists() {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    #[cfg(unix)]
    {
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .map_or(true, |s| s.success())
    }
    #[cfg(not(unix))]
    true
}

/// This machine's name, to tell whose PID a lock holds.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A run folder held by one process: `run.lock` holds "PID HOST"; dropping releases it.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist). Refused while a live process (or one on
    /// another host) holds it; a lock left by a dead process on this host is taken over.
    pub fn acquire(dir: &Path) -> Result<RunLock, String> {
        let path = dir.join(LOCK_FILE);
        let mine = format!("{} {}\n", std::process::id(), host_name());
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(mine.as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => take_over_stale(&path)?,
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!(
            "{}: could not take the lock (another process keeps taking it)",
            path.display()
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Moves a stale lock out of the way, or says which live process holds it.
fn take_over_stale(path: &Path) -> Result<(), String> {
    let held = fs::read_to_string(path).unwrap_or_default();
    let mut words = held.split_whitespace();
    let pid = words.next().and_then(|p| p.parse::<u32>().ok());
    let host = words.next().unwrap_or("").to_owned();
    let stale = match pid {
        Some(pid) => host == host_name() && !process_alive(pid),
        // Empty or garbage: a writer died before finishing it, unless it is still writing.
        None => age(path) > Duration::from_secs(10),
    };
    if !stale {
        let holder = match pid {
            Some(pid) => format!("process {pid} on {host}"),
            None => "a process that is still writing its lock".into(),
        };
        return Err(format!(
            "{} is in use by {holder}: another trainer is writing this run \
             (delete {} only if that process is gone)",
            path.parent().unwrap_or(Path::new(".")).display(),
            path.display()
        ));
    }
    // Rename first, so that of two processes taking over the same stale lock only one wins.
    let aside = path.with_extension(format!("stale-{}", std::process::id()));
    if fs::rename(path, &aside).is_ok() {
        if fs::read_to_string(&aside).unwrap_or_default() != held {
            // Someone else took it over in between: put their lock back.
            let _ = fs::rename(&aside, path);
        } else {
            let _ = fs::remove_file(&aside);
        }
    }
    Ok(())
}

/// Largest music file (MIDI, MusicXML, .mxl, ABC) an importer reads.
pub const MAX_MUSIC_FILE: u64 = 64 << 20;
/// Largest checkpoint or dataset file a loader reads.
pub const MAX_DATA_FILE: u64 = 64 << 30;

/// Reads `path` if it is a regular file of at most `max` bytes (symlinks followed).
pub fn read_input(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::other(
            "not a regular file (a folder, device or FIFO)",
        ));
    }
    if meta.len() > max {
        return Err(io::Error::other(format!(
            "{} bytes, more than the {} MiB a file of this kind may have",
            meta.len(),
            max >> 20
        )));
    }
    use std::io::Read;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other("the file grew while it was read"));
    }
    Ok(bytes)
}

/// How long ago `path` was last modified (zero if that can't be told).
fn age(path: &Path) -> Duration {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// Refuses outputs that are existing input files (same file after resolving links and `..`):
/// `outputs` are (flag, path) pairs, so the message names the flag.
pub fn refuse_inputs_as_outputs(outputs: &[(&str, &Path)], inputs: &[&Path]) -> Result<(), String> {
    let canonical: Vec<(PathBuf, &Path)> = inputs
        .iter()
        .filter_map(|i| i.canonicalize().ok().map(|c| (c, *i)))
        .collect();
    for (flag, out) in outputs {
        let Ok(o) = out.canonicalize() else {
            continue;
        };
        if !o.is_file() {
            continue;
        }
        if let Some((_, input)) = canonical.iter().find(|(c, _)| *c == o) {
            return Err(format!(
                "{flag} {} is also an input ({}): refusing to overwrite it",
                out.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_replaced_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_bytes(&p, b"one").unwrap();
        write_bytes(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_bytes(dir.path(), b"x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_and_devices_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.bin");
        fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink("real.bin", &link).unwrap();
        write_bytes(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        // A dangling link: its target is created.
        let dangling = dir.path().join("dangling.bin");
        std::os::unix::fs::symlink("made.bin", &dangling).unwrap();
        write_bytes(&dangling, b"made").unwrap();
        assert_eq!(fs::read(dir.path().join("made.bin")).unwrap(), b"made");
        // A device node stays a device node.
        write_bytes(Path::new("/dev/null"), b"nothing").unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().is_file());
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir
            .path()
            .join(format!(".model.safetensors.tmp-{}", dead_pid()));
        let live = dir
            .path()
            .join(format!(".best.safetensors.tmp-{}", std::process::id()));
        for p in [&dead, &live] {
            fs::write(p, b"partial").unwrap();
        }
        fs::write(dir.path().join("notes.tmp-x"), b"mine").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), vec![dead.clone()]);
        assert!(!dead.exists() && live.exists());
        // Writing a file removes its own stale temporaries too.
        fs::write(&dead, b"partial").unwrap();
        write_bytes(dir.path().join("model.safetensors"), b"whole").unwrap();
        assert!(!dead.exists());
    }

    #[test]
    fn run_lock_is_exclusive_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err();
        assert!(e.contains("in use by process"), "{e}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        let stale = format!("{} {}\n", dead_pid(), host_name());
        fs::write(dir.path().join(LOCK_FILE), stale).unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let held = fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(held.starts_with(&std::process::id().to_string()), "{held}");
        // A lock being written (empty, fresh) is not taken over.
        let fresh = tempfile::tempdir().unwrap();
        fs::write(fresh.path().join(LOCK_FILE), "").unwrap();
        assert!(RunLock::acquire(fresh.path()).is_err());
        // Another host's lock can't be checked: refused.
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join(LOCK_FILE), "1 some-other-node\n").unwrap();
        assert!(RunLock::acquire(other.path()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn inputs_must_be_regular_files_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.mid");
        fs::write(&p, b"MThd....").unwrap();
        assert_eq!(read_input(&p, 100).unwrap(), b"MThd....");
        let e = read_input(&p, 4).unwrap_err().to_string();
        assert!(e.contains("more than"), "{e}");
        let e = read_input(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("pipe.mid");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(read_input(&fifo, 100).is_err(), "a FIFO must not block");
        }
    }

    #[test]
    fn outputs_that_are_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.arvae");
        fs::write(&input, b"data").unwrap();
        let same = dir.path().join("sub/../in.arvae");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let e = refuse_inputs_as_outputs(&[("--json", &same)], &[&input]).unwrap_err();
        assert!(e.contains("--json") && e.contains("also an input"), "{e}");
        let other = dir.path().join("out.json");
        refuse_inputs_as_outputs(&[("--json", &other)], &[&input]).unwrap();
        refuse_inputs_as_outputs(
            &[("--out", Path::new("/dev/null"))],
            &[Path::new("/dev/null")],
        )
        .unwrap();
    }
}
