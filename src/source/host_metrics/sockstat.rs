//! `sockstat`: `node_sockstat_<PROTOCOL>_<key>` and `node_sockstat_sockets_used` from
//! `/proc/net/sockstat` and `/proc/net/sockstat6` (node_exporter's `sockstat_linux.go`):
//! every `key value` pair of a protocol's line, and `mem` (pages) also as `mem_bytes`. A
//! missing file is skipped (IPv6 off), as in node_exporter.

use std::sync::OnceLock;

use super::{read, Collected, Emitter, Roots};

/// The kernel's page size, which `mem` counts in.
fn page_size() -> f64 {
    static PAGE: OnceLock<f64> = OnceLock::new();
    *PAGE.get_or_init(|| rustix::param::page_size() as f64)
}

/// Reads both files.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    for file in ["net/sockstat", "net/sockstat6"] {
        let Some(text) = read(&roots.proc(file)) else {
            continue;
        };
        for line in text.lines() {
            let Some((protocol, pairs)) = line.split_once(':') else {
                continue;
            };
            let fields: Vec<&str> = pairs.split_ascii_whitespace().collect();
            check!(
                fields.len().is_multiple_of(2),
                "malformed /proc/{file} line {line:?}"
            );
            for pair in fields.chunks_exact(2) {
                let value: f64 = pair[1]
                    .parse()
                    .map_err(|_| failed!("malformed /proc/{file} line {line:?}"))?;
                let (protocol, key) = (protocol.trim(), pair[0]);
                if protocol == "sockets" {
                    out.gauge(&format!("node_sockstat_sockets_{key}"), &[], value);
                    continue;
                }
                out.gauge(&format!("node_sockstat_{protocol}_{key}"), &[], value);
                if key == "mem" {
                    let bytes = value * page_size();
                    out.gauge(&format!("node_sockstat_{protocol}_mem_bytes"), &[], bytes);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_every_protocol_of_both_files() {
        let lines = run("net", collect).unwrap();
        for expected in [
            "node_sockstat_sockets_used{} gauge 10",
            "node_sockstat_TCP_inuse{} gauge 2",
            "node_sockstat_TCP_tw{} gauge 3",
            "node_sockstat_TCP_mem{} gauge 80",
            &format!(
                "node_sockstat_TCP_mem_bytes{{}} gauge {}",
                80.0 * page_size()
            ),
            "node_sockstat_FRAG_memory{} gauge 0",
            "node_sockstat_TCP6_inuse{} gauge 1",
            "node_sockstat_FRAG6_memory{} gauge 0",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "{expected}: {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 20, "node_exporter's 20 series: {lines:#?}");
        // Neither file: nothing, and no failure (as node_exporter).
        assert_eq!(run("empty", collect).unwrap(), Vec::<String>::new());
    }
}
