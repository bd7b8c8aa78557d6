//! Datagrams the kernel dropped before a UDP syslog source read them: the socket's receive
//! buffer was full (the agent starved of CPU, stopped, or `receive_buffer_bytes` too small
//! for a burst). Linux counts them per socket in the `drops` column of `/proc/net/udp` and
//! `/proc/net/udp6`; this reads that column for the source's socket (found by its inode)
//! and adds what grew to `sluice_syslog_kernel_drops_total`, so a datagram that reached
//! the host is either received or counted.
//!
//! Owns: finding the socket's line and the delta since the last read. Never: reads the
//! socket. Unix datagram sockets have no such column (a full receiver makes the sender
//! wait or fail instead), nor do other systems: there this counts nothing.

use std::os::fd::AsFd;
use std::time::Instant;

use crate::telemetry::{Counter, LogEvery};

/// How often the drop count is read while the source runs (and once more at its stop).
pub(super) const READ_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The kernel's drop count of one UDP socket, as last read.
pub(super) struct KernelDrops {
    table: &'static str,
    inode: u64,
    last: u64,
    counter: Counter,
    log: LogEvery,
}

impl KernelDrops {
    /// Watches `socket` (bound to an IPv6 address when `v6`); `None` when its inode cannot
    /// be read (no `/proc`).
    pub(super) fn new(socket: impl AsFd, v6: bool, counter: Counter) -> Option<Self> {
        let owned = socket.as_fd().try_clone_to_owned().ok()?;
        let inode =
            std::os::unix::fs::MetadataExt::ino(&std::fs::File::from(owned).metadata().ok()?);
        let table = if v6 {
            "/proc/net/udp6"
        } else {
            "/proc/net/udp"
        };
        // Drops before the source existed are not its own (a fresh socket has none).
        let last = read_drops(table, inode).unwrap_or(0);
        Some(KernelDrops {
            table,
            inode,
            last,
            counter,
            log: LogEvery::new(std::time::Duration::from_secs(10)),
        })
    }

    /// Reads the count again; counts and returns what grew since the last read.
    pub(super) fn read(&mut self, source: &str) -> u64 {
        let Some(now) = read_drops(self.table, self.inode) else {
            return 0;
        };
        let grown = now.saturating_sub(self.last);
        self.last = now;
        if grown > 0 {
            self.counter.add(grown);
            if let Some(due) = self.log.add(grown, Instant::now()) {
                tracing::warn!(
                    source,
                    dropped = due.count,
                    since_last_line_secs = due.since_last_line_secs,
                    "the kernel dropped syslog datagrams: the socket's receive buffer was full (the agent short of CPU, or a burst larger than receive_buffer_bytes); counted in sluice_syslog_kernel_drops_total"
                );
            }
        }
        grown
    }
}

/// The `drops` column of the line for socket `inode` in `table`.
fn read_drops(table: &str, inode: u64) -> Option<u64> {
    drops_in(&std::fs::read_to_string(table).ok()?, inode)
}

/// The `drops` column of the line for socket `inode` in the text of a `/proc/net/udp`
/// table (columns: sl, local and remote address, state, queues, timer, retransmits, uid,
/// timeout, inode, ref, pointer, drops).
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_ascii_whitespace().collect();
        if columns.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        columns.get(12)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two lines as Linux 6.1 writes them (the header, then one socket each).
    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:A3B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7654321 2 0000000000000000 0
  456: 00000000:0202 00000000:0000 07 00000000:00001F40 00:00000000 00000000     0        0 1234567 2 0000000000000000 4187
";

    #[test]
    fn the_drops_of_the_socket_with_the_inode_are_read() {
        assert_eq!(drops_in(TABLE, 1234567), Some(4187));
        assert_eq!(drops_in(TABLE, 7654321), Some(0));
        assert_eq!(drops_in(TABLE, 42), None);
        assert_eq!(drops_in("", 42), None);
        assert_eq!(drops_in("header\n  1: short line 7654321\n", 7654321), None);
    }

    #[test]
    fn a_fresh_socket_is_found_with_no_drops() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let counter = crate::telemetry::Counter::default();
        let mut drops = KernelDrops::new(&socket, false, counter).expect("inode readable");
        assert!(
            read_drops(drops.table, drops.inode).is_some(),
            "the socket's line is found"
        );
        assert_eq!(drops.read("test"), 0);
    }
}
