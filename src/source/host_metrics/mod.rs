//! `type: host_metrics`: the host's metrics read straight from `/proc` and `/sys`, with
//! node_exporter 1.x's metric names, label names and units, so dashboards built for
//! node_exporter work unchanged (like Fluent Bit's `node_exporter_metrics` and Alloy's
//! `prometheus.exporter.unix`). One file per collector, each following node_exporter's
//! `collector/<name>_linux.go`.
//!
//! Every `interval_secs` (first at start) the enabled collectors run one after the other
//! on the source's own thread (a stuck `statfs` on a dead NFS mount must not stall the
//! runtime); all samples of one collection share one timestamp. Like node_exporter,
//! each collector also reports `node_scrape_collector_success{collector}` and
//! `node_scrape_collector_duration_seconds{collector}`. A series that was produced by the
//! previous collection and not by this one (an unmounted filesystem, a removed interface)
//! gets one Prometheus staleness marker, as a scrape would.
//!
//! Roots are configurable (`proc_path`, `sys_path`, `rootfs_path`, as node_exporter's
//! `--path.*`) so the agent can read the host's from inside a container.
//!
//! Owns: reading the kernel's files into metric events. Never: panics or stops on a
//! missing or malformed file (that collector reports `success 0` and the others go on).

/// A collector's failure as a plain message ([`Failed`]), formatted like `format!`.
macro_rules! failed {
    ($($message:tt)*) => {
        $crate::source::host_metrics::Failed(format!($($message)*))
    };
}

/// Returns [`Failed`] from the collector unless `condition` holds.
macro_rules! check {
    ($condition:expr, $($message:tt)*) => {
        if !$condition {
            return Err(failed!($($message)*));
        }
    };
}

pub mod arp;
pub mod conntrack;
pub mod cpu;
pub mod diskstats;
pub mod entropy;
pub mod filefd;
pub mod filesystem;
pub mod hwmon;
pub mod loadavg;
pub mod meminfo;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod os;
pub mod pressure;
pub mod sockstat;
pub mod softnet;
pub mod stat;
pub mod thermal_zone;
pub mod time;
pub mod udp_queues;
pub mod uname;
pub mod vmstat;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::staleness::SeriesSet;
use super::{Running, SourceContext};
use crate::batch::Batch;
use crate::event::{Event, Metric, MetricValue, Timestamp};
use crate::transform::to_metric::valid_label_name;

/// Every collector, in the order they run.
pub const COLLECTORS: &[&str] = &[
    "arp",
    "conntrack",
    "cpu",
    "diskstats",
    "entropy",
    "filefd",
    "filesystem",
    "hwmon",
    "loadavg",
    "meminfo",
    "netclass",
    "netdev",
    "netstat",
    "os",
    "pressure",
    "sockstat",
    "softnet",
    "stat",
    "thermal_zone",
    "time",
    "udp_queues",
    "uname",
    "vmstat",
];

/// `type: host_metrics` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostMetricsConfig {
    /// Seconds between two collections (default 15).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Collectors to run (default: all of [`COLLECTORS`]).
    #[serde(default)]
    pub collectors: Option<Vec<String>>,
    /// procfs mount point (node_exporter's `--path.procfs`), default `/proc`.
    #[serde(default = "default_proc_path")]
    pub proc_path: PathBuf,
    /// sysfs mount point (`--path.sysfs`), default `/sys`.
    #[serde(default = "default_sys_path")]
    pub sys_path: PathBuf,
    /// Where the host's root filesystem is mounted (`--path.rootfs`), default `/`.
    #[serde(default = "default_rootfs_path")]
    pub rootfs_path: PathBuf,
    /// udev's database, for `node_disk_info` (`--path.udev.data`), default `/run/udev/data`.
    #[serde(default = "default_udev_data_path")]
    pub udev_data_path: PathBuf,
    /// Mount points not reported (node_exporter's default); Go regexp semantics, see
    /// [`Exclude`].
    #[serde(default = "filesystem::default_mount_points_exclude")]
    pub filesystem_mount_points_exclude: String,
    /// Filesystem types not reported (node_exporter's default).
    #[serde(default = "filesystem::default_fs_types_exclude")]
    pub filesystem_fs_types_exclude: String,
    /// Block devices not reported by `diskstats` (node_exporter's default: partitions,
    /// ram, loop, fd).
    #[serde(default = "diskstats::default_device_exclude")]
    pub diskstats_device_exclude: String,
    /// Network devices not reported by `netdev` (default none, as upstream; Debian's
    /// package excludes `^lo$`).
    #[serde(default)]
    pub netdev_device_exclude: Option<String>,
    /// Labels added to every metric (a metric's own label of the same name wins).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_interval_secs() -> u64 {
    15
}
fn default_proc_path() -> PathBuf {
    "/proc".into()
}
fn default_sys_path() -> PathBuf {
    "/sys".into()
}
fn default_rootfs_path() -> PathBuf {
    "/".into()
}
fn default_udev_data_path() -> PathBuf {
    "/run/udev/data".into()
}

/// An exclusion pattern (`*_exclude`), matched as node_exporter's Go regexps match: its
/// Perl classes `\d`, `\s`, `\w` and `\b` are ASCII, as in Go's RE2. The pattern is compiled
/// without Unicode mode (`.` and classes match the name's UTF-8 bytes, `(?i)` folds ASCII
/// only; `(?u:...)` turns Unicode on for part of a pattern): a Unicode `\d` or `.` made
/// the regex crate build ~120 KiB of automata and ~350 KiB of scratch per pattern at
/// start-up, most of the source's idle memory (issue 22; docs/decisions.md).
#[derive(Debug, Clone)]
pub struct Exclude(regex::bytes::Regex);

impl Exclude {
    /// Compiles `pattern`; the error names the config `key`.
    pub fn new(key: &str, pattern: &str) -> anyhow::Result<Exclude> {
        regex::bytes::RegexBuilder::new(pattern)
            .unicode(false)
            .build()
            .map(Exclude)
            .map_err(|error| anyhow::anyhow!("{key}: {error}"))
    }

    /// True when `name` matches the pattern anywhere (anchor it with `^...$`).
    pub fn is_match(&self, name: &str) -> bool {
        self.0.is_match(name.as_bytes())
    }
}

impl HostMetricsConfig {
    /// Validates the collectors, the regexes and the labels.
    pub fn build(&self) -> anyhow::Result<HostMetrics> {
        crate::bounds::check(
            "interval_secs",
            self.interval_secs,
            1..=crate::bounds::MAX_SECS,
        )?;
        let collectors = match &self.collectors {
            None => COLLECTORS.to_vec(),
            Some(names) => {
                anyhow::ensure!(
                    !names.is_empty(),
                    "collectors: empty (it would collect nothing; leave it out for all)"
                );
                let mut chosen = Vec::new();
                for name in names {
                    let Some(known) = COLLECTORS.iter().find(|known| *known == name) else {
                        anyhow::bail!(
                            "collectors: unknown collector {name:?} (known: {})",
                            COLLECTORS.join(", ")
                        );
                    };
                    anyhow::ensure!(
                        !chosen.contains(known),
                        "collectors: {name:?} is listed twice"
                    );
                    chosen.push(*known);
                }
                chosen
            }
        };
        let mut labels = Vec::new();
        for (name, value) in &self.labels {
            anyhow::ensure!(
                valid_label_name(name) && name != "le",
                "labels: {name:?} is not a valid Prometheus label name"
            );
            labels.push((name.clone(), value.clone()));
        }
        let netdev_exclude = match &self.netdev_device_exclude {
            Some(pattern) => Some(Exclude::new("netdev_device_exclude", pattern)?),
            None => None,
        };
        Ok(HostMetrics {
            interval: Duration::from_secs(self.interval_secs),
            collectors,
            roots: Roots {
                proc: self.proc_path.clone(),
                sys: self.sys_path.clone(),
                rootfs: self.rootfs_path.clone(),
                udev_data: self.udev_data_path.clone(),
                mount_points_exclude: Exclude::new(
                    "filesystem_mount_points_exclude",
                    &self.filesystem_mount_points_exclude,
                )?,
                fs_types_exclude: Exclude::new(
                    "filesystem_fs_types_exclude",
                    &self.filesystem_fs_types_exclude,
                )?,
                disk_exclude: Exclude::new(
                    "diskstats_device_exclude",
                    &self.diskstats_device_exclude,
                )?,
                netdev_exclude,
            },
            labels,
            state: State::default(),
        })
    }
}

/// Where the collectors read, and what they leave out.
#[derive(Debug)]
pub struct Roots {
    /// procfs root.
    pub proc: PathBuf,
    /// sysfs root.
    pub sys: PathBuf,
    /// The host's root filesystem.
    pub rootfs: PathBuf,
    /// udev's database.
    pub udev_data: PathBuf,
    /// Mount points left out.
    pub mount_points_exclude: Exclude,
    /// Filesystem types left out.
    pub fs_types_exclude: Exclude,
    /// Block devices left out.
    pub disk_exclude: Exclude,
    /// Network devices left out.
    pub netdev_exclude: Option<Exclude>,
}

impl Roots {
    /// Roots at `proc` and `sys` with node_exporter's default exclusions (tests).
    pub fn at(proc: &Path, sys: &Path) -> Roots {
        HostMetricsConfig {
            proc_path: proc.to_owned(),
            sys_path: sys.to_owned(),
            ..HostMetricsConfig::default()
        }
        .build()
        .expect("the default config builds")
        .roots
    }

    /// `<proc_path>/<rel>`.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    /// `<sys_path>/<rel>`.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        HostMetricsConfig {
            interval_secs: default_interval_secs(),
            collectors: None,
            proc_path: default_proc_path(),
            sys_path: default_sys_path(),
            rootfs_path: default_rootfs_path(),
            udev_data_path: default_udev_data_path(),
            filesystem_mount_points_exclude: filesystem::default_mount_points_exclude(),
            filesystem_fs_types_exclude: filesystem::default_fs_types_exclude(),
            diskstats_device_exclude: diskstats::default_device_exclude(),
            netdev_device_exclude: None,
            labels: BTreeMap::new(),
        }
    }
}

/// Where collectors put their samples.
#[derive(Debug, Default)]
pub struct Emitter {
    /// The samples so far.
    pub metrics: Vec<Metric>,
    timestamp: Timestamp,
    /// Room left in each sample's labels for the source's own (`labels:`).
    extra_labels: usize,
}

impl Emitter {
    /// An emitter stamping every sample with `timestamp`.
    pub fn new(timestamp: Timestamp) -> Self {
        Self::sized(timestamp, 0, 0)
    }

    /// An emitter with room for `samples` samples, and in each sample's labels for
    /// `extra_labels` more: vectors allocated once at their size rather than grown through
    /// every smaller size (each size an allocator page of the collecting thread).
    pub fn sized(timestamp: Timestamp, samples: usize, extra_labels: usize) -> Self {
        Emitter {
            metrics: Vec::with_capacity(samples),
            timestamp,
            extra_labels,
        }
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: MetricValue) {
        let mut owned = Vec::with_capacity(labels.len() + self.extra_labels);
        owned.extend(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        owned.sort();
        self.metrics.push(Metric {
            name: name.to_owned(),
            labels: owned,
            value,
            timestamp: self.timestamp,
        });
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, MetricValue::Gauge(value));
    }

    /// A counter sample.
    pub fn counter(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, MetricValue::Counter(value));
    }
}

/// Reads a kernel file that holds one number (`nf_conntrack_count`, `entropy_avail`);
/// missing or malformed fails the collector, naming `name`.
pub fn read_number(path: &Path, name: &str) -> Result<f64, Failed> {
    let text = read(path).ok_or_else(|| failed!("no {name}"))?;
    (text.trim().parse::<f64>()).map_err(|_| failed!("malformed {name}: {text:?}"))
}

/// A row of hexadecimal columns (`softnet_stat`, `/proc/net/stat/*`); one that does not
/// parse fails the collector, naming `file`.
pub fn hex_row(line: &str, file: &str) -> Result<Vec<u64>, Failed> {
    (line.split_whitespace())
        .map(|column| u64::from_str_radix(column, 16))
        .collect::<Result<Vec<u64>, _>>()
        .map_err(|_| failed!("malformed {file} line: {line:?}"))
}

/// Reads a small kernel file as text (invalid UTF-8 replaced); `None` when it is missing
/// or unreadable.
pub fn read(path: &Path) -> Option<String> {
    // Kernel files report a size of 0, so `fs::read` would grow its buffer from 32 bytes,
    // through every allocator size class to the file's size: one page at once instead.
    let mut bytes = Vec::with_capacity(4096);
    std::io::Read::read_to_end(&mut std::fs::File::open(path).ok()?, &mut bytes).ok()?;
    Some(
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// A built host_metrics source.
#[derive(Debug)]
pub struct HostMetrics {
    interval: Duration,
    collectors: Vec<&'static str>,
    roots: Roots,
    /// Sorted by name.
    labels: Vec<(String, String)>,
    state: State,
}

/// What collectors keep from one collection to the next.
#[derive(Debug, Default)]
struct State {
    cpu: cpu::Monotonic,
    /// Samples in the last collection.
    samples: usize,
}

/// Why a collector produced nothing this time (its `node_scrape_collector_success` is 0).
/// A plain message, not an `anyhow::Error`: an absent `/sys/class/hwmon` or thermal zone is
/// the normal case on a VM and fails every collection, and with `RUST_BACKTRACE` set anyhow
/// captures a backtrace for each error, unwinding the stack through `.eh_frame`: 320 KiB of
/// the binary mapped in and kept resident (measured), plus the CPU, every 15 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a collector returns.
pub type Collected = Result<(), Failed>;

/// The one `match` over collectors. An `Err` means the collector failed (success 0).
fn run_collector(name: &str, roots: &Roots, state: &mut State, out: &mut Emitter) -> Collected {
    match name {
        "arp" => arp::collect(roots, out),
        "cpu" => cpu::collect(roots, &mut state.cpu, out),
        "diskstats" => diskstats::collect(roots, out),
        "entropy" => entropy::collect(roots, out),
        "conntrack" => conntrack::collect(roots, out),
        "filefd" => filefd::collect(roots, out),
        "filesystem" => filesystem::collect(roots, out),
        "hwmon" => hwmon::collect(roots, out),
        "loadavg" => loadavg::collect(roots, out),
        "meminfo" => meminfo::collect(roots, out),
        "netclass" => netclass::collect(roots, out),
        "netdev" => netdev::collect(roots, out),
        "netstat" => netstat::collect(roots, out),
        "os" => os::collect(roots, out),
        "pressure" => pressure::collect(roots, out),
        "sockstat" => sockstat::collect(roots, out),
        "softnet" => softnet::collect(roots, out),
        "stat" => stat::collect(roots, out),
        "thermal_zone" => thermal_zone::collect(roots, out),
        "time" => time::collect(roots, out),
        "udp_queues" => udp_queues::collect(roots, out),
        "uname" => uname::collect(roots, out),
        "vmstat" => vmstat::collect(roots, out),
        other => Err(failed!("unknown collector {other}")),
    }
}

impl HostMetrics {
    /// Samples are taken anew.
    pub const REPLAYABLE: bool = false;

    /// Starts the collection loop on a thread of its own. A stuck read (`statfs` on a dead
    /// NFS mount, a slow I2C `hwmon` sensor) holds only this thread, never the runtime; and
    /// every collection allocates (and, through the recycler, frees) on the same thread, so
    /// its memory stays in one thread's allocator pages instead of in those of whichever
    /// blocking-pool thread ran it (docs/decisions.md, issue 22).
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        Running::thread("host_metrics", ctx, move |ctx| self.run(ctx))
    }

    /// Collects at once, then every `interval` (a collection or a full queue that ran past
    /// the next tick delays it, as tokio's `MissedTickBehavior::Delay` does).
    fn run(mut self, ctx: SourceContext) {
        let stream_key = crate::hash_str(&ctx.checkpoint_key("host_metrics"));
        let mut previous = SeriesSet::default();
        let mut next = Instant::now();
        loop {
            ctx.out.free_returned();
            let metrics = self.collect_with_staleness(&mut previous, Timestamp::now());
            let events: Vec<Event> = metrics.into_iter().map(Event::Metric).collect();
            ctx.metrics.events_in.add(events.len() as u64);
            if ctx.out.send(stream_key, Batch::new(events)).is_err() {
                return;
            }
            next += self.interval;
            let now = Instant::now();
            if next < now {
                next = now + self.interval;
            }
            // By now the sink has encoded and let go of the collection's events: they came
            // back to this thread (the recycler) and are freed here, and the allocator
            // gives back the pages they emptied, instead of keeping them until the next
            // collection.
            let returned = now + RETURN_WAIT;
            if returned < next {
                if wait_until(&ctx.shutdown, returned) {
                    return;
                }
                ctx.out.free_returned();
                crate::memory_return::collect_this_thread();
            }
            if wait_until(&ctx.shutdown, next) {
                return;
            }
        }
    }

    /// One collection, plus a staleness marker for each series of `previous` (the last
    /// collection's) that is gone; `previous` becomes this collection's series.
    fn collect_with_staleness(
        &mut self,
        previous: &mut SeriesSet,
        timestamp: Timestamp,
    ) -> Vec<Metric> {
        let mut metrics = self.collect(timestamp);
        let current = SeriesSet::of(&metrics, previous);
        previous.mark_gone(&current, timestamp, &mut metrics);
        *previous = current;
        metrics
    }

    /// One collection: every enabled collector, plus node_exporter's per-collector
    /// `node_scrape_collector_{success,duration_seconds}`.
    pub fn collect(&mut self, timestamp: Timestamp) -> Vec<Metric> {
        // Sized as the last collection was.
        let mut out = Emitter::sized(timestamp, self.state.samples, self.labels.len());
        for name in &self.collectors {
            let started = Instant::now();
            let result = run_collector(name, &self.roots, &mut self.state, &mut out);
            if let Err(error) = &result {
                tracing::debug!(collector = name, %error, "host_metrics collector failed");
            }
            let labels = [("collector", *name)];
            out.gauge(
                "node_scrape_collector_duration_seconds",
                &labels,
                started.elapsed().as_secs_f64(),
            );
            out.gauge(
                "node_scrape_collector_success",
                &labels,
                if result.is_ok() { 1.0 } else { 0.0 },
            );
        }
        if !self.labels.is_empty() {
            for metric in &mut out.metrics {
                add_labels(&mut metric.labels, &self.labels);
            }
        }
        self.state.samples = out.metrics.len();
        out.metrics
    }
}

/// How long after sending a collection its events are freed (when the next collection is
/// further away): time for the sink to take, encode and release them.
const RETURN_WAIT: Duration = Duration::from_secs(2);

/// Blocks until `deadline`; true when the agent stops first.
fn wait_until(shutdown: &crate::shutdown::Shutdown, deadline: Instant) -> bool {
    // The condition variable may wake early: wait out the rest.
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || shutdown.wait_timeout(left) {
            break;
        }
    }
    shutdown.is_triggered()
}

/// Adds `extra` labels a metric does not have already; keeps them sorted.
pub fn add_labels(labels: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    let mut added = false;
    for (name, value) in extra {
        if !labels.iter().any(|(k, _)| k == name) {
            labels.push((name.clone(), value.clone()));
            added = true;
        }
    }
    if added {
        labels.sort();
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// The fixture trees under `tests/data/host_metrics/<name>`.
    pub fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/host_metrics")
            .join(name)
    }

    /// Roots at `tests/data/host_metrics/<name>/{proc,sys}`.
    pub fn roots(name: &str) -> Roots {
        let dir = fixture(name);
        Roots::at(&dir.join("proc"), &dir.join("sys"))
    }

    /// Runs `collect` on fixture `name`: `name{labels} value` lines, sorted, or the error.
    pub fn run(
        name: &str,
        collect: fn(&Roots, &mut Emitter) -> Collected,
    ) -> Result<Vec<String>, String> {
        let mut out = Emitter::new(Timestamp(0));
        collect(&roots(name), &mut out).map_err(|e| e.to_string())?;
        Ok(render(&out.metrics))
    }

    /// `name{a="b"} value` (with `counter`/`gauge`), sorted.
    pub fn render(metrics: &[Metric]) -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .iter()
            .map(|m| {
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let (kind, value) = match m.value {
                    MetricValue::Counter(v) => ("counter", v),
                    MetricValue::Gauge(v) => ("gauge", v),
                    MetricValue::Histogram { .. } => ("histogram", f64::NAN),
                };
                format!("{}{{{}}} {kind} {value}", m.name, labels.join(","))
            })
            .collect();
        lines.sort();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_config() {
        for (yaml, expected) in [
            ("interval_secs: 0", "interval_secs"),
            ("collectors: [cpu, bogus]", "unknown collector"),
            ("collectors: []", "collectors: empty"),
            ("collectors: [cpu, cpu]", "listed twice"),
            ("diskstats_device_exclude: '('", "diskstats_device_exclude"),
            ("labels: { 'a-b': x }", "not a valid"),
        ] {
            let config: HostMetricsConfig = crate::yaml::from_str(yaml, "t.yaml").unwrap();
            let error = format!("{:#}", config.build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }

    fn check_exclude(exclude: &Exclude, cases: &[(&str, bool)]) {
        for (name, excluded) in cases {
            assert_eq!(exclude.is_match(name), *excluded, "{name:?}");
        }
    }

    #[test]
    fn default_exclusions_decide_as_node_exporter_does() {
        let roots = Roots::at(Path::new("/proc"), Path::new("/sys"));
        check_exclude(
            &roots.mount_points_exclude,
            &[
                ("/", false),
                ("/dev", true),
                ("/dev/shm", true),
                ("/devices", false),
                ("/proc/sys/fs/binfmt_misc", true),
                ("/sys", true),
                ("/run", false),
                ("/run/credentials", false),
                ("/run/credentials/getty.service", true),
                ("/var/lib/docker", false),
                ("/var/lib/docker/overlay2/ab/merged", true),
                ("/var/lib/containers/storage/é", true),
                ("/home/é", false),
            ],
        );
        check_exclude(
            &roots.fs_types_exclude,
            &[
                ("ext4", false),
                ("tmpfs", false),
                ("cgroup", true),
                ("cgroup2", true),
                ("cgroup3", false),
                ("sysfs", true),
                ("xsysfs", false),
            ],
        );
        check_exclude(
            &roots.disk_exclude,
            &[
                ("sda", false),
                ("sda1", true),
                ("xvda12", true),
                ("nvme0n1", false),
                ("nvme0n1p2", true),
                ("loop7", true),
                ("ram0", true),
                ("fd0", true),
                ("dm-0", false),
                // Go's `\d` is ASCII: an Arabic-Indic digit is no partition number.
                ("sda\u{661}", false),
            ],
        );
    }

    #[test]
    fn user_exclusions_keep_go_semantics() {
        let exclude = |pattern: &str| Exclude::new("k", pattern).unwrap();
        check_exclude(&exclude("^/mnt/.+$"), &[("/mnt/é", true), ("/mnt/", false)]);
        check_exclude(&exclude("(?i)^LO$"), &[("lo", true), ("lo0", false)]);
        check_exclude(
            &exclude(r"^eth\d$"),
            &[("eth0", true), ("eth\u{661}", false)],
        );
        check_exclude(&exclude(r"^(?u:\pL)+$"), &[("été", true), ("e1", false)]);
        let error = Exclude::new("netdev_device_exclude", "(").unwrap_err();
        assert!(
            error.to_string().starts_with("netdev_device_exclude: "),
            "{error}"
        );
    }

    #[test]
    fn a_missing_tree_fails_collectors_without_panicking() {
        let config = HostMetricsConfig {
            proc_path: "/nonexistent/proc".into(),
            sys_path: "/nonexistent/sys".into(),
            rootfs_path: "/nonexistent".into(),
            labels: [("host".to_owned(), "h1".to_owned())].into(),
            ..HostMetricsConfig::default()
        };
        let metrics = config.build().unwrap().collect(Timestamp(1));
        let success = |name: &str| {
            metrics
                .iter()
                .find(|m| {
                    m.name == "node_scrape_collector_success"
                        && m.labels.iter().any(|(k, v)| k == "collector" && v == name)
                })
                .map(|m| m.value.clone())
        };
        assert_eq!(success("meminfo"), Some(MetricValue::Gauge(0.0)));
        assert_eq!(success("time"), Some(MetricValue::Gauge(1.0)));
        assert!(metrics
            .iter()
            .all(|m| m.labels.iter().any(|(k, v)| k == "host" && v == "h1")));
    }

    #[test]
    fn collects_this_host() {
        let metrics = HostMetricsConfig::default()
            .build()
            .unwrap()
            .collect(Timestamp(1));
        for name in [
            "node_cpu_seconds_total",
            "node_memory_MemTotal_bytes",
            "node_boot_time_seconds",
            "node_uname_info",
        ] {
            assert!(metrics.iter().any(|m| m.name == name), "{name}");
        }
    }
}
