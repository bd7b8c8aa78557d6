//! `conntrack`: netfilter's connection tracking, as node_exporter 1.5's
//! `conntrack_linux.go`: `node_nf_conntrack_entries` and `node_nf_conntrack_entries_limit`
//! from `/proc/sys/net/netfilter/nf_conntrack_{count,max}`, and the table's statistics
//! from `/proc/net/stat/nf_conntrack` (hexadecimal, a row per CPU, summed) as gauges
//! `node_nf_conntrack_stat_{found,invalid,ignore,insert,insert_failed,drop,early_drop,
//! search_restart}`. Where the module is not loaded the files are missing and the
//! collector fails, as node_exporter's does.

use super::{hex_row, read, read_number, Collected, Emitter, Roots};

/// The statistics reported, by their column name in `/proc/net/stat/nf_conntrack`.
const STATS: &[&str] = &[
    "found",
    "invalid",
    "ignore",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "search_restart",
];

/// Reads the two counts and the statistics table.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let number = |name: &str| read_number(&roots.proc(&format!("sys/net/netfilter/{name}")), name);
    let entries = number("nf_conntrack_count")?;
    let limit = number("nf_conntrack_max")?;
    let text = read(&roots.proc("net/stat/nf_conntrack"))
        .ok_or_else(|| failed!("no /proc/net/stat/nf_conntrack"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let mut sums = vec![0u64; STATS.len()];
    let columns: Vec<usize> = STATS
        .iter()
        .map(|name| {
            (header.iter().position(|h| h == name))
                .ok_or_else(|| failed!("nf_conntrack has no {name} column"))
        })
        .collect::<Result<_, _>>()?;
    for line in lines {
        let values = hex_row(line, "nf_conntrack")?;
        check!(
            values.len() == header.len(),
            "malformed nf_conntrack line: {line:?}"
        );
        for (sum, &column) in sums.iter_mut().zip(&columns) {
            *sum = sum.wrapping_add(values[column]);
        }
    }
    out.gauge("node_nf_conntrack_entries", &[], entries);
    out.gauge("node_nf_conntrack_entries_limit", &[], limit);
    for (name, sum) in STATS.iter().zip(sums) {
        out.gauge(&format!("node_nf_conntrack_stat_{name}"), &[], sum as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_the_counts_and_sums_each_cpus_statistics() {
        assert_eq!(
            run("basic", collect).unwrap(),
            [
                "node_nf_conntrack_entries_limit{} gauge 262144",
                "node_nf_conntrack_entries{} gauge 123",
                "node_nf_conntrack_stat_drop{} gauge 3",
                "node_nf_conntrack_stat_early_drop{} gauge 0",
                "node_nf_conntrack_stat_found{} gauge 17",
                "node_nf_conntrack_stat_ignore{} gauge 4098",
                "node_nf_conntrack_stat_insert_failed{} gauge 2",
                "node_nf_conntrack_stat_insert{} gauge 0",
                "node_nf_conntrack_stat_invalid{} gauge 272",
                "node_nf_conntrack_stat_search_restart{} gauge 33",
            ]
        );
        assert!(run("empty", collect).is_err());
        assert!(run("malformed", collect).is_err());
    }
}
