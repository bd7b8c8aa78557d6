//! The input the end-to-end benches feed the agent: plain 150-byte log lines.

use std::io::Write as _;
use std::path::Path;

/// Appends lines `seqs` to `path` (created if missing), each 149 characters and a newline.
pub fn append_lines(path: &Path, seqs: std::ops::Range<u64>) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open input");
    let mut out = std::io::BufWriter::new(file);
    for seq in seqs {
        let mut line = format!(
            "2024-05-01T10:00:00.000Z INFO web-1 request seq={seq} path=/api/v1/orders status=200 took_ms=12 "
        );
        while line.len() < 149 {
            line.push('x');
        }
        line.push('\n');
        out.write_all(line.as_bytes()).expect("write input");
    }
    out.flush().expect("flush input");
}

/// Writes `path` back to disk now, so the kernel's writeback of the input does not compete
/// with the agent for the CPU while it is measured.
pub fn settle(path: &Path) {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .expect("sync input");
}
