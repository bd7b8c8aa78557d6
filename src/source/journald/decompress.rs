//! Decompression of journal data objects: xz, lz4 and zstd, all pure Rust.
//!
//! The payload formats are systemd's (src/basic/compress.c): xz is a whole `.xz` stream; lz4
//! is a little-endian 64-bit decompressed size followed by one LZ4 block; zstd is one zstd
//! frame.
//!
//! Owns: turning a compressed payload into its bytes. Never: allocates more than
//! [`MAX_DECODED`] for one payload, whatever size the payload claims.

use std::io::Read as _;

use super::file::Error;

/// `ObjectHeader.flags` bits.
const COMPRESSED_XZ: u8 = 1;
const COMPRESSED_LZ4: u8 = 2;
const COMPRESSED_ZSTD: u8 = 4;

/// The largest decompressed payload accepted (journald's default `--data-threshold` of
/// readers is 64 KiB; writers cap a field at 768 MiB, far more than an agent should hold).
pub const MAX_DECODED: u64 = 64 << 20;

/// Decompresses `raw` according to the object's compression bits (exactly one set).
pub fn decompress(flags: u8, raw: &[u8]) -> Result<Vec<u8>, Error> {
    match flags {
        COMPRESSED_XZ => xz(raw),
        COMPRESSED_LZ4 => lz4(raw),
        COMPRESSED_ZSTD => zstd(raw),
        other => Err(Error::Decompress(format!("compression flags {other:#x}"))),
    }
}

fn xz(raw: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Limited(Vec::new());
    lzma_rs::xz_decompress(&mut std::io::BufReader::new(raw), &mut out)
        .map_err(|error| Error::Decompress(format!("xz: {error}")))?;
    Ok(out.0)
}

fn lz4(raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.len() < 8 {
        return Err(Error::Decompress("lz4: no size prefix".into()));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&raw[..8]);
    let size = u64::from_le_bytes(size);
    if size > MAX_DECODED {
        return Err(Error::Decompress(format!("lz4: {size} bytes decoded")));
    }
    lz4_flex::block::decompress(&raw[8..], size as usize)
        .map_err(|error| Error::Decompress(format!("lz4: {error}")))
}

fn zstd(raw: &[u8]) -> Result<Vec<u8>, Error> {
    let decoder = ruzstd::decoding::StreamingDecoder::new(raw)
        .map_err(|error| Error::Decompress(format!("zstd: {error}")))?;
    let mut out = Vec::new();
    decoder
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|error| Error::Decompress(format!("zstd: {error}")))?;
    if out.len() as u64 > MAX_DECODED {
        return Err(Error::Decompress("zstd: too large".into()));
    }
    Ok(out)
}

/// A `Vec` that refuses to grow past [`MAX_DECODED`].
struct Limited(Vec<u8>);

impl std::io::Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.0.len() + buf.len()) as u64 > MAX_DECODED {
            return Err(std::io::Error::other("decoded payload too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(flags: u8, raw: &[u8], expected: Result<&[u8], &str>) {
        match (decompress(flags, raw), expected) {
            (Ok(out), Ok(expected)) => assert_eq!(out, expected),
            (Err(error), Err(reason)) => assert_eq!(error.reason(), reason, "{error}"),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn payloads_decode_or_fail_cleanly() {
        let text = b"MESSAGE=hello hello hello hello hello hello";
        let mut lz4 = (text.len() as u64).to_le_bytes().to_vec();
        lz4.extend(lz4_flex::block::compress(text));
        check(COMPRESSED_LZ4, &lz4, Ok(text));
        check(COMPRESSED_LZ4, &lz4[..5], Err("decompress"));
        check(COMPRESSED_LZ4, &[255; 12], Err("decompress"));
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &text[..], &mut xz).unwrap();
        check(COMPRESSED_XZ, &xz, Ok(text));
        check(COMPRESSED_XZ, &xz[..xz.len() / 2], Err("decompress"));
        check(COMPRESSED_ZSTD, b"not zstd at all", Err("decompress"));
        check(COMPRESSED_XZ | COMPRESSED_LZ4, &lz4, Err("decompress"));
        check(COMPRESSED_LZ4, &(u64::MAX).to_le_bytes(), Err("decompress"));
    }

    /// An `.xz` stream as systemd's `compress_blob_xz` makes it (liblzma, no integrity
    /// check), written by the `xz` tool (`xz --format=xz --check=none`), not by the crate
    /// that decodes it.
    #[test]
    fn decodes_liblzma_output() {
        const XZ: &[u8] = &[
            0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x00, 0xff, 0x12, 0xd9, 0x41, 0x02, 0x00,
            0x21, 0x01, 0x16, 0x00, 0x00, 0x00, 0x74, 0x2f, 0xe5, 0xa3, 0xe0, 0x00, 0x41, 0x00,
            0x23, 0x5d, 0x00, 0x26, 0x91, 0x46, 0xc0, 0xd1, 0x94, 0x57, 0xe4, 0x93, 0xc9, 0xe3,
            0x2d, 0xe1, 0xb0, 0xb7, 0xb7, 0x63, 0x92, 0x2f, 0x2d, 0xf8, 0x4c, 0xba, 0xae, 0xee,
            0x73, 0x64, 0x56, 0x76, 0x21, 0xe0, 0xb0, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x01,
            0x37, 0x42, 0xa3, 0x35, 0x53, 0x28, 0x06, 0x72, 0x9e, 0x7a, 0x01, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x59, 0x5a,
        ];
        check(
            COMPRESSED_XZ,
            XZ,
            Ok(b"MESSAGE=hello from liblzma, hello from liblzma, hello from liblzma"),
        );
    }
}
