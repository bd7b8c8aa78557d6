//! `loadavg`: `node_load1`, `node_load5`, `node_load15` from `/proc/loadavg`
//! (node_exporter's `loadavg_linux.go`).

use super::{read, Collected, Emitter, Roots};

/// Reads the first three fields of `/proc/loadavg`.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("loadavg")).ok_or_else(|| failed!("no /proc/loadavg"))?;
    let loads: Vec<f64> = text
        .split_ascii_whitespace()
        .take(3)
        .map_while(|f| f.parse().ok())
        .collect();
    let [one, five, fifteen] = loads[..] else {
        return Err(failed!("malformed /proc/loadavg: {text:?}"));
    };
    out.gauge("node_load1", &[], one);
    out.gauge("node_load5", &[], five);
    out.gauge("node_load15", &[], fifteen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_three_loads() {
        assert_eq!(
            run("basic", collect).unwrap(),
            [
                "node_load15{} gauge 1.15",
                "node_load1{} gauge 0.36",
                "node_load5{} gauge 0.83"
            ]
        );
        assert!(run("malformed", collect).is_err());
        assert!(run("empty", collect).is_err());
    }
}
