//! `vmstat`: `node_vmstat_<name>` for the `/proc/vmstat` counters node_exporter exports by
//! default (`vmstat_linux.go`, fields `^(oom_kill|pgpg|pswp|pg.*fault).*`), as counters
//! (node_exporter leaves them untyped; every one only grows).

use super::{read, Collected, Emitter, Roots};

/// node_exporter's default `--collector.vmstat.fields`, as a test on the name.
fn exported(name: &str) -> bool {
    ["oom_kill", "pgpg", "pswp"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name
            .strip_prefix("pg")
            .is_some_and(|rest| rest.contains("fault"))
}

/// Reads `/proc/vmstat`.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("vmstat")).ok_or_else(|| failed!("no /proc/vmstat"))?;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !exported(name) {
            continue;
        }
        let value: f64 = value
            .parse()
            .map_err(|_| failed!("malformed /proc/vmstat line {line:?}"))?;
        out.counter(&format!("node_vmstat_{name}"), &[], value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_the_default_fields() {
        assert_eq!(
            run("net", collect).unwrap(),
            [
                "node_vmstat_oom_kill{} counter 0",
                "node_vmstat_pgfault{} counter 780239695",
                "node_vmstat_pgmajfault{} counter 185177",
                "node_vmstat_pgpgin{} counter 112114681",
                "node_vmstat_pgpgout{} counter 223584116",
                "node_vmstat_pswpin{} counter 0",
                "node_vmstat_pswpout{} counter 0"
            ]
        );
        assert!(run("empty", collect).is_err());
    }
}
