//! The `data_dir` lock: one agent per data directory.
//!
//! Two agents on one `data_dir` (a packaged service and a DaemonSet pod on the same host, a
//! second `sluice run` by mistake) would overwrite each other's checkpoints. At start the
//! agent opens `<data_dir>/lock`, takes an exclusive lock on it without waiting (`flock`,
//! through [`File::try_lock`]) and writes its PID into it. A second agent is refused with
//! the holder's PID, read from the file. The lock is held for the process's lifetime,
//! across reloads, and the kernel releases it when the process ends, however it ends; the
//! file itself stays (its content is only informative).
//!
//! Owns: `<data_dir>/lock`. Never: waits for the lock; is taken by `sluice validate`.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

/// Name of the lock file inside `data_dir`.
pub const LOCK_FILE: &str = "lock";

/// The held lock on a `data_dir`; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `data_dir` if needed and locks it for this process. Fails at once, naming
    /// the holder's PID, if another process holds it.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        fs::create_dir_all(data_dir)
            .with_context(|| format!("data_dir {} cannot be created", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the data_dir lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                anyhow::bail!(
                    "data_dir {} is in use by another sluice agent (pid {}, holding {}); \
                     each agent needs its own data_dir",
                    data_dir.display(),
                    holder_pid(&mut file),
                    path.display()
                )
            }
            Err(TryLockError::Error(error)) => {
                return Err(error)
                    .with_context(|| format!("cannot lock the data_dir {}", path.display()))
            }
        }
        if let Err(error) = write_pid(&mut file) {
            // The lock holds regardless; only a refused second agent's message loses the PID.
            tracing::warn!(file = %path.display(), %error, "could not write the pid into the data_dir lock");
        }
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// The PID the holder wrote, or `unknown`. The holder writes it just after taking the lock,
/// so an empty file is read again for a moment.
fn holder_pid(file: &mut File) -> String {
    for _ in 0..20 {
        let mut text = String::new();
        let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
        if let (Ok(_), Ok(pid)) = (read, text.trim().parse::<u32>()) {
            return pid.to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holders_pid_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = DataDirLock::acquire(&data).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(fs::read_to_string(held.path()).unwrap().trim(), pid);
        // flock locks belong to the open file: a second open in this process conflicts too.
        let refused = DataDirLock::acquire(&data).unwrap_err().to_string();
        assert!(refused.contains(&format!("pid {pid}")), "{refused}");
        assert!(refused.contains(&data.display().to_string()), "{refused}");
        drop(held);
        DataDirLock::acquire(&data).expect("a released lock can be taken again");
    }

    #[test]
    fn stale_lock_file_of_a_dead_agent_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOCK_FILE), "999999999\nleftover").unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(
            fs::read_to_string(held.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}
