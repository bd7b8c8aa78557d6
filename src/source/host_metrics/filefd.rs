//! `filefd`: `node_filefd_allocated` and `node_filefd_maximum` from
//! `/proc/sys/fs/file-nr` (node_exporter's `filefd_linux.go`: the first and third
//! tab-separated fields).

use super::{read, Collected, Emitter, Roots};

/// Reads `/proc/sys/fs/file-nr`.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("sys/fs/file-nr")).ok_or_else(|| failed!("no file-nr"))?;
    let fields: Vec<&str> = text.trim().split('\t').collect();
    check!(fields.len() >= 3, "malformed file-nr: {text:?}");
    let number = |field: &str| {
        field
            .trim()
            .parse::<f64>()
            .map_err(|_| failed!("malformed file-nr: {text:?}"))
    };
    out.gauge("node_filefd_allocated", &[], number(fields[0])?);
    out.gauge("node_filefd_maximum", &[], number(fields[2])?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_allocated_and_maximum() {
        assert_eq!(
            run("net", collect).unwrap(),
            [
                "node_filefd_allocated{} gauge 315",
                "node_filefd_maximum{} gauge 2466170"
            ]
        );
        assert!(run("empty", collect).is_err());
    }
}
