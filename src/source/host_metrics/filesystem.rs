//! `filesystem`: size, free and available bytes and inodes of every mounted filesystem
//! (node_exporter's `filesystem_linux.go`): `node_filesystem_{size,free,avail}_bytes`,
//! `node_filesystem_{files,files_free}`, `node_filesystem_readonly` and
//! `node_filesystem_device_error` (1 when `statfs` failed), labelled
//! `device`/`mountpoint`/`fstype`. Mounts come from `/proc/1/mounts` (falling back to
//! `/proc/mounts`), `\040`/`\011` decoded; `statfs` is called on `rootfs_path` + mount
//! point, and `rootfs_path` is stripped from the reported mount point. Mount points and
//! types matching node_exporter 1.5's default exclusions are left out (Debian's package
//! patches the mount-point one to also leave out `/run`, `/mnt` and `/media`).
//!
//! Left out: node_exporter's stuck-mount watchdog (a `statfs` that hangs on a dead NFS
//! server delays this collection; it runs on the source's own thread, so nothing else).

use std::path::{Path, PathBuf};

use super::{read, Collected, Emitter, Roots};

/// node_exporter 1.5's `--collector.filesystem.mount-points-exclude` default.
pub fn default_mount_points_exclude() -> String {
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
        .to_owned()
}

/// node_exporter 1.5's `--collector.filesystem.fs-types-exclude` default.
pub fn default_fs_types_exclude() -> String {
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$".to_owned()
}

/// One line of a mounts file.
#[derive(Debug, PartialEq)]
pub struct Mount {
    /// First field.
    pub device: String,
    /// Second field, decoded, `rootfs_path` stripped.
    pub mount_point: String,
    /// Third field.
    pub fs_type: String,
    /// `ro` among the options.
    pub read_only: bool,
}

/// Parses a mounts file; lines with fewer than four fields are skipped.
pub fn parse_mounts(text: &str, rootfs: &Path) -> Vec<Mount> {
    let rootfs = rootfs.to_string_lossy();
    let rootfs = rootfs.trim_end_matches('/');
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_ascii_whitespace().collect();
            if parts.len() < 4 {
                return None;
            }
            let decoded = parts[1].replace("\\040", " ").replace("\\011", "\t");
            let mount_point = match decoded.strip_prefix(rootfs) {
                Some(rest) if !rootfs.is_empty() && (rest.is_empty() || rest.starts_with('/')) => {
                    if rest.is_empty() {
                        "/".to_owned()
                    } else {
                        rest.to_owned()
                    }
                }
                _ => decoded,
            };
            Some(Mount {
                device: parts[0].to_owned(),
                mount_point,
                fs_type: parts[2].to_owned(),
                read_only: parts[3].split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

fn rootfs_file(rootfs: &Path, mount_point: &str) -> PathBuf {
    rootfs.join(mount_point.trim_start_matches('/'))
}

/// Reads the mount table and calls `statfs` on each mount not excluded.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("1/mounts"))
        .or_else(|| read(&roots.proc("mounts")))
        .ok_or_else(|| failed!("no /proc/1/mounts or /proc/mounts"))?;
    for mount in parse_mounts(&text, &roots.rootfs) {
        if roots.mount_points_exclude.is_match(&mount.mount_point)
            || roots.fs_types_exclude.is_match(&mount.fs_type)
        {
            continue;
        }
        let labels = [
            ("device", mount.device.as_str()),
            ("mountpoint", mount.mount_point.as_str()),
            ("fstype", mount.fs_type.as_str()),
        ];
        match rustix::fs::statfs(rootfs_file(&roots.rootfs, &mount.mount_point)) {
            Ok(stat) => {
                let block = stat.f_bsize as f64;
                out.gauge(
                    "node_filesystem_size_bytes",
                    &labels,
                    stat.f_blocks as f64 * block,
                );
                out.gauge(
                    "node_filesystem_free_bytes",
                    &labels,
                    stat.f_bfree as f64 * block,
                );
                out.gauge(
                    "node_filesystem_avail_bytes",
                    &labels,
                    stat.f_bavail as f64 * block,
                );
                out.gauge("node_filesystem_files", &labels, stat.f_files as f64);
                out.gauge("node_filesystem_files_free", &labels, stat.f_ffree as f64);
                out.gauge(
                    "node_filesystem_readonly",
                    &labels,
                    f64::from(u8::from(mount.read_only)),
                );
                out.gauge("node_filesystem_device_error", &labels, 0.0);
            }
            Err(_) => out.gauge("node_filesystem_device_error", &labels, 1.0),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{render, roots};
    use super::*;
    use crate::event::Timestamp;

    #[test]
    fn parses_mount_lines() {
        let text = "/dev/sda1 / ext4 rw,relatime 0 0\n\
                    server:/x /mnt/with\\040space nfs ro,vers=4 0 0\n\
                    short line\n\
                    /dev/sdb1 /host/data xfs rw 0 0\n";
        let mounts = parse_mounts(text, Path::new("/host"));
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1].mount_point, "/mnt/with space");
        assert!(mounts[1].read_only);
        assert_eq!(mounts[2].mount_point, "/data");
        assert_eq!(parse_mounts(text, Path::new("/"))[0].mount_point, "/");
    }

    #[test]
    fn excludes_and_reports_statfs_errors() {
        // The fixture's mounts: `/` (real, statfs works), /proc (excluded), a tmpfs
        // whose directory does not exist (device_error 1).
        let mut out = Emitter::new(Timestamp(0));
        collect(&roots("basic"), &mut out).unwrap();
        let lines = render(&out.metrics);
        assert!(
            lines.iter().any(|l| {
                l.starts_with(
            r#"node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} gauge "#
        )
            }),
            "{lines:#?}"
        );
        assert!(lines.contains(&r#"node_filesystem_device_error{device="tmpfs",fstype="tmpfs",mountpoint="/nonexistent-sluice-test"} gauge 1"#.to_owned()), "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("/proc")), "{lines:#?}");
        assert_eq!(lines.len(), 7 + 1);
    }
}
