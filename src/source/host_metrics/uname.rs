//! `uname`: `node_uname_info{sysname,release,version,machine,nodename,domainname} 1` from
//! the `uname(2)` system call (node_exporter's `uname_linux.go`; like it, not affected by
//! `proc_path`: the kernel answers for the agent's UTS namespace).

use super::{Collected, Emitter, Roots};

/// Calls `uname(2)`.
pub fn collect(_roots: &Roots, out: &mut Emitter) -> Collected {
    let uname = rustix::system::uname();
    let text = |s: &std::ffi::CStr| s.to_string_lossy().into_owned();
    let (sysname, release, version, machine, nodename, domainname) = (
        text(uname.sysname()),
        text(uname.release()),
        text(uname.version()),
        text(uname.machine()),
        text(uname.nodename()),
        text(uname.domainname()),
    );
    out.gauge(
        "node_uname_info",
        &[
            ("sysname", &sysname),
            ("release", &release),
            ("version", &version),
            ("machine", &machine),
            ("nodename", &nodename),
            ("domainname", &domainname),
        ],
        1.0,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reports_linux() {
        let lines = run("empty", collect).unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(r#"sysname="Linux""#), "{lines:?}");
    }
}
