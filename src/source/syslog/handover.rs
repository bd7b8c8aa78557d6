//! Listening sockets kept across a reload: a UDP or TCP syslog source of a pipeline that a
//! reload restarts finds the socket its predecessor bound, still open, instead of binding
//! anew. Between the old source's stop and the new one's start the kernel keeps queueing:
//! TCP connections wait in the listen backlog (none refused), datagrams in the receive
//! buffer (none lost), where closing and binding again refused connections and dropped
//! datagrams for that moment.
//!
//! Each socket is held here (one descriptor) while a source uses it, or after its last
//! user stopped until [`release_unclaimed`] (the end of a reload): then a socket no
//! pipeline of the new config claimed is closed. A socket in use is never shared: a second
//! source at the same address is refused as a second bind would be.
//!
//! Owns: the held sockets and who uses them. Never: reads from them; Unix sockets (their
//! file is removed and created again by their source).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Which kind of socket, at which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

/// A held socket and how many sources use it now.
struct Held {
    socket: OwnedFd,
    users: usize,
}

fn held() -> MutexGuard<'static, HashMap<Key, Held>> {
    static HELD: OnceLock<Mutex<HashMap<Key, Held>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A source's use of a held socket; dropping it (the source stopped) leaves the socket
/// held for a successor until [`release_unclaimed`].
#[derive(Debug)]
pub(super) struct Claim(Key);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(held) = held().get_mut(&self.0) {
            held.users = held.users.saturating_sub(1);
        }
    }
}

/// The socket for `key`: the held one if a source bound it before (a descriptor of the
/// same socket, and whether it was reused), else the one `bind` makes, held from now on.
/// A bind refused because a socket held for no source has the port (the reload moved
/// the source from `0.0.0.0` to one address, say) closes those and tries again.
pub(super) fn claim(
    key: Key,
    bind: impl Fn() -> io::Result<OwnedFd>,
) -> io::Result<(OwnedFd, bool, Claim)> {
    let mut held = held();
    let reused = held.contains_key(&key);
    if held.get(&key).is_some_and(|held| held.users > 0) {
        return Err(io::ErrorKind::AddrInUse.into());
    }
    if !reused {
        let socket = match bind() {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                held.retain(|_, held| held.users > 0);
                bind()?
            }
            other => other?,
        };
        held.insert(key, Held { socket, users: 0 });
    }
    let entry = held.get_mut(&key).expect("inserted above");
    let socket = entry.socket.try_clone()?;
    entry.users += 1;
    Ok((socket, reused, Claim(key)))
}

static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The agent is exiting (`true`): no pipeline will take over a socket, so a stopping
/// source reads what its socket still holds rather than leaving it to a successor.
pub fn set_exiting(exiting: bool) {
    EXITING.store(exiting, std::sync::atomic::Ordering::Release);
}

/// Whether a stopping source's socket may pass to a successor (a reload), which then reads
/// what it holds.
pub(super) fn successor_expected() -> bool {
    !EXITING.load(std::sync::atomic::Ordering::Acquire)
}

/// Closes the held sockets no running source uses (their pipeline removed, or its address
/// changed by the reload that just ended).
pub fn release_unclaimed() {
    held().retain(|key, held| {
        if held.users == 0 {
            tracing::debug!(
                ?key,
                "syslog socket closed: no source uses it after the reload"
            );
        }
        held.users > 0
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp() -> io::Result<OwnedFd> {
        Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.into())
    }

    #[test]
    fn a_socket_is_reused_while_held_and_closed_when_released_unclaimed() {
        let (first, reused, claim) = claim(Key::Udp(([127, 0, 0, 9], 1).into()), udp).unwrap();
        assert!(!reused);
        let address = std::net::UdpSocket::from(first).local_addr().unwrap();
        drop(claim);
        // Held with no user: the next claim of the key gets the same socket.
        let (again, reused, claim) = super::claim(Key::Udp(([127, 0, 0, 9], 1).into()), || {
            panic!("bound again")
        })
        .unwrap();
        assert!(reused);
        assert_eq!(
            std::net::UdpSocket::from(again).local_addr().unwrap(),
            address
        );
        // In use: not shared with a second source, kept by a release.
        let second = super::claim(Key::Udp(([127, 0, 0, 9], 1).into()), udp);
        assert_eq!(second.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        release_unclaimed();
        assert!(held().contains_key(&Key::Udp(([127, 0, 0, 9], 1).into())));
        drop(claim);
        release_unclaimed();
        assert!(!held().contains_key(&Key::Udp(([127, 0, 0, 9], 1).into())));
        // A failed bind holds nothing.
        let failed = super::claim(Key::Tcp(([127, 0, 0, 9], 2).into()), || {
            Err(io::Error::other("no"))
        });
        assert!(failed.is_err());
        assert!(!held().contains_key(&Key::Tcp(([127, 0, 0, 9], 2).into())));
    }
}
