//! Process limits: the open-file limit that bounds how many connections a listener may
//! hold (each is a descriptor, as are files, checkpoints and sink sockets).
//!
//! Owns: raising the soft `RLIMIT_NOFILE` to the hard limit at start, and reading it.
//! Never: uses `unsafe` (rustix wraps the system calls).

use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything but stream connections: files being read, the
/// checkpoint and dead-letter files, sink and API sockets, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft open-file limit to the hard one (a common soft limit is 1024, below
/// syslog's default `max_connections`). Returns the soft limit now in force (`None`:
/// unlimited or unknown).
pub fn raise_open_files() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let wanted = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(error) => {
                tracing::debug!(%error, "cannot raise the open-file limit");
            }
        }
    }
    limit.current
}

/// The hard open-file limit (what [`raise_open_files`] raises the soft one to; `None`:
/// unlimited or unknown).
pub fn open_files_possible() -> Option<u64> {
    getrlimit(Resource::Nofile).maximum
}

/// How many stream connections fit beside [`RESERVED_DESCRIPTORS`] under the soft
/// open-file limit now in force (`None`: no limit).
pub fn connections_allowed() -> Option<usize> {
    let soft = getrlimit(Resource::Nofile).current?;
    let allowed = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    Some(usize::try_from(allowed).unwrap_or(usize::MAX))
}
