//! `entropy`: `node_entropy_available_bits` and `node_entropy_pool_size_bits` from
//! `/proc/sys/kernel/random/{entropy_avail,poolsize}` (node_exporter's
//! `entropy_linux.go`).

use super::{read_number, Collected, Emitter, Roots};

/// Reads the two files; either missing fails the collector, as in node_exporter.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let number = |name: &str| read_number(&roots.proc(&format!("sys/kernel/random/{name}")), name);
    let available = number("entropy_avail")?;
    let pool = number("poolsize")?;
    out.gauge("node_entropy_available_bits", &[], available);
    out.gauge("node_entropy_pool_size_bits", &[], pool);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_available_and_pool_size() {
        assert_eq!(
            run("net", collect).unwrap(),
            [
                "node_entropy_available_bits{} gauge 256",
                "node_entropy_pool_size_bits{} gauge 256"
            ]
        );
        assert!(run("empty", collect).is_err());
    }
}
