//! The reader loop: finds the journal files, keeps them open across rotation and vacuum,
//! interleaves their entries in journalctl's order, and sends batches whose acks carry each
//! file's position.
//!
//! - Files are found (`discovery.rs`) by a scan of the journal directories, run at start, on an inotify event
//!   that is not a plain write (create, rename, delete), and every `poll_interval_ms`. A file
//!   is known by device + inode, so journald's rotation (a rename of `system.journal` to
//!   `system@….journal`) keeps reading the same open file to its end.
//! - An archived file read to its end is closed; its stream is forgotten when the file is
//!   gone (vacuumed). A file deleted while unread is read to its end through the open
//!   descriptor (counted as `reason="deleted"`). journald's vacuum may zero a file still
//!   open; one read to the end of the entries it held when it got its archived name
//!   (`…@….journal`: journald appends nothing after the rename) is complete, not broken.
//! - Order: entries of one sequence-number space by `seqnum`, else of one boot by the
//!   monotonic clock, else by realtime (`journalctl`'s rule); an entry equal to the one
//!   before it (the same entry in `/run` and `/var` during journald's flush) is read once.
//! - A file that cannot be read (not a journal, truncated, corrupt) is counted in
//!   `sluice_journal_errors_total{reason}` once per state of the file; the others go on.
//!   An online file may look inconsistent while journald writes it: it is read again at
//!   the next turn and counted only if it stays so for [`ONLINE_GRACE`].
//!
//! Opening, following, closing and failing files is in `files.rs`; this file is the loop:
//! turns, waiting, and reading entries in order into batches.
//!
//! Owns: the open journal files and their stream trackers. Never: blocks the pipeline on a
//! broken file, or commits an entry a sink did not settle.

mod files;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::discovery::{self, Change, Location, Watcher};
use super::entry::to_event;
use super::file::{EntryMeta, Fields, FileState, JournalFile};
use super::filter::Filter;
use super::ReadFrom;
use crate::ack::StreamTracker;
use crate::batch::Batch;
use crate::event::{Event, StreamName};
use crate::health::Heartbeat;
use crate::source::SourceContext;
use crate::telemetry::{Counter, Gauge, LogEvery};

/// How long an online file may stay unreadable before it is counted as broken.
const ONLINE_GRACE: Duration = Duration::from_secs(5);
/// How long the loop may not come round before `/health` fails.
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// Batches sent per turn before the loop looks at the files again.
const BATCHES_PER_TURN: usize = 16;

/// A source's validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub location: Location,
    pub filter: Filter,
    pub current_boot_only: bool,
    pub read_from: ReadFrom,
    pub all_fields: bool,
    pub batch_events: usize,
    pub poll_interval: Duration,
}

/// Runs the source until shutdown.
pub fn run(settings: Settings, ctx: SourceContext) {
    let mut reader = Reader::new(settings, ctx);
    reader.start();
    while !reader.ctx.shutdown.is_triggered() {
        reader.heartbeat.beat();
        match reader.turn() {
            Ok(true) => {}
            Ok(false) => reader.wait(),
            Err(Stopped) => break,
        }
    }
}

/// The agent is stopping.
struct Stopped;

/// One open journal file.
struct Open {
    journal: JournalFile,
    identity: (u64, u64),
    key: String,
    stream: StreamName,
    tracker: StreamTracker,
    /// The next entry, peeked.
    head: Option<EntryMeta>,
    /// Position of the last ack handed out.
    acked: u64,
    /// Seen by the last scan.
    present: bool,
    /// Deleted before it was read to its end (counted once).
    deleted_counted: bool,
    /// Unreadable since (online files get [`ONLINE_GRACE`]).
    failing_since: Option<Instant>,
    /// Failed this turn: tried again at the next one.
    paused: bool,
    /// The file's entry count once journald has archived it: read from a header after the
    /// file was seen under an archived name (`…@….journal`), and journald appends nothing
    /// to a file after renaming it. Read that far, the file is complete even if a vacuum
    /// then zeroes or deletes it before its header says archived.
    sealed: Option<u64>,
}

struct Reader {
    settings: Settings,
    ctx: SourceContext,
    open: Vec<Open>,
    /// Files that failed, by identity: their size and mtime then (retried when changed).
    broken: HashMap<(u64, u64), (u64, SystemTime)>,
    /// Files under an online name with no journal header yet, by identity: since when.
    /// journald creates a file and writes its header a moment later; such a file is looked
    /// at again at each scan, and counted as broken only after [`ONLINE_GRACE`].
    headerless: HashMap<(u64, u64), Instant>,
    /// When to log entries and fields left out because they cannot be read.
    left_out_log: LogEvery,
    /// Positions of files that failed during the batch being read, up to the entries read
    /// of them: they go with that batch (else those entries, delivered, were never
    /// checkpointed and were sent again after every restart).
    failed_acks: Vec<crate::ack::AckRef>,
    /// Archived files read to their end and closed: identity → checkpoint key.
    finished: HashMap<(u64, u64), String>,
    /// The first start with `read_from: end`: files found by the first scan start at
    /// their end.
    start_at_end: bool,
    boot_id: Option<[u8; 16]>,
    machine_id: Option<String>,
    watcher: Watcher,
    changes: Receiver<Change>,
    next_scan: Instant,
    fields: Fields,
    stream_key: u64,
    /// (seqnum_id, seqnum, boot_id) of the last entry read, to read a duplicate once.
    last: Option<([u8; 16], u64, [u8; 16])>,
    heartbeat: Heartbeat,
    errors: HashMap<&'static str, Counter>,
    files_open: Gauge,
}

impl Reader {
    fn new(settings: Settings, ctx: SourceContext) -> Self {
        let (watcher, changes) = Watcher::new();
        let saved = ctx
            .checkpoints
            .positions_with_prefix(&ctx.checkpoint_key(""));
        let heartbeat = Heartbeat::new(format!("{}/source/{}", ctx.pipeline, ctx.id), STUCK_AFTER);
        let files_open = ctx.metrics.gauge(
            "sluice_journal_files_open",
            "Journal files open for reading.",
            &[],
        );
        let stream_key = crate::hash_str(&ctx.checkpoint_key("journal"));
        Reader {
            start_at_end: settings.read_from == ReadFrom::End && saved.is_empty(),
            settings,
            open: Vec::new(),
            broken: HashMap::new(),
            headerless: HashMap::new(),
            left_out_log: LogEvery::new(Duration::from_secs(10)),
            failed_acks: Vec::new(),
            finished: HashMap::new(),
            boot_id: discovery::read_id("/proc/sys/kernel/random/boot_id"),
            machine_id: std::fs::read_to_string("/etc/machine-id")
                .ok()
                .map(|id| id.trim().to_owned())
                .filter(|id| id.len() == 32),
            watcher,
            changes,
            next_scan: Instant::now(),
            fields: Fields::default(),
            stream_key,
            last: None,
            heartbeat,
            errors: HashMap::new(),
            files_open,
            ctx,
        }
    }

    /// Reads what is new. True when something was read (so there may be more).
    fn turn(&mut self) -> Result<bool, Stopped> {
        let mut rescan = Instant::now() >= self.next_scan;
        for change in self.changes.try_iter() {
            if matches!(change, Change::Rescan) {
                rescan = true;
            }
        }
        if rescan {
            self.scan();
        }
        self.refresh();
        let mut any = false;
        for _ in 0..BATCHES_PER_TURN {
            if !self.read_batch()? {
                break;
            }
            any = true;
            if self.ctx.shutdown.is_triggered() {
                return Err(Stopped);
            }
        }
        if !any {
            self.close_finished();
        }
        Ok(any)
    }

    /// Waits for an inotify event, the next scan, or shutdown.
    fn wait(&mut self) {
        self.ctx.out.free_returned();
        let until = self.next_scan;
        while !self.ctx.shutdown.is_triggered() {
            let now = Instant::now();
            if now >= until {
                return;
            }
            let slice = (until - now).min(Duration::from_millis(100));
            if self.changes.recv_timeout(slice).is_ok() {
                // Let a burst of writes settle into one turn.
                std::thread::sleep(Duration::from_millis(5));
                return;
            }
        }
    }

    /// Reads the headers of files that may still grow.
    fn refresh(&mut self) {
        let mut failed = Vec::new();
        for (index, open) in self.open.iter_mut().enumerate() {
            open.paused = false;
            if open.journal.header().state == FileState::Archived && open.failing_since.is_none() {
                continue;
            }
            match open.journal.refresh() {
                Ok(()) => {
                    if open.sealed.is_none() && files::archived_name(open.journal.path()) {
                        let n_entries = open.journal.header().n_entries;
                        open.sealed = Some(n_entries);
                        open.tracker
                            .set_meta(files::finished_meta(open.journal.path(), n_entries));
                    }
                }
                Err(error) => failed.push((index, error)),
            }
        }
        for (index, error) in failed.into_iter().rev() {
            self.failed(index, error);
        }
    }

    /// Reads up to one batch of entries and sends it. False when nothing was read.
    fn read_batch(&mut self) -> Result<bool, Stopped> {
        let mut events = Vec::new();
        let mut n_seen = 0;
        while n_seen < self.settings.batch_events {
            let Some(index) = self.next_file() else {
                break;
            };
            let open = &mut self.open[index];
            let Some(meta) = open.head.take() else {
                break;
            };
            let seqnum_id = open.journal.header().seqnum_id;
            let position = open.journal.n_read();
            let duplicate = self.last == Some((seqnum_id, meta.seqnum, meta.boot_id));
            let other_boot = self.settings.current_boot_only
                && self.boot_id.is_some_and(|boot| boot != meta.boot_id);
            if !duplicate && !other_boot {
                match open.journal.read_fields(&meta, &mut self.fields) {
                    Ok(0) => {}
                    Ok(left_out) => self.left_out(index, "bad_field", u64::from(left_out)),
                    Err(error) => {
                        self.failed(index, error);
                        continue;
                    }
                }
                let open = &self.open[index];
                if self.settings.filter.keeps(&self.fields) {
                    let event = to_event(
                        &meta,
                        &self.fields,
                        self.settings.all_fields,
                        &open.stream,
                        position,
                    );
                    events.push(Event::Log(event));
                }
            }
            self.open[index].journal.advance();
            self.last = Some((seqnum_id, meta.seqnum, meta.boot_id));
            n_seen += 1;
        }
        if n_seen == 0 {
            return Ok(false);
        }
        self.ctx.metrics.events_in.add(events.len() as u64);
        let mut acks: Vec<_> = self
            .open
            .iter_mut()
            .filter(|open| open.journal.n_read() > open.acked)
            .map(|open| {
                open.acked = open.journal.n_read();
                open.tracker.track(open.acked)
            })
            .collect();
        acks.append(&mut self.failed_acks);
        let batch = Batch {
            events,
            acks,
            home: None,
        };
        self.ctx
            .out
            .send(self.stream_key, batch)
            .map_err(|_| Stopped)?;
        Ok(true)
    }

    /// The file whose next entry comes first, peeking where needed.
    fn next_file(&mut self) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut index = 0;
        while index < self.open.len() {
            let open = &mut self.open[index];
            if open.head.is_none() && !open.paused {
                match open.journal.peek() {
                    Ok(head) => {
                        if head.is_some() {
                            open.failing_since = None;
                        }
                        open.head = head;
                    }
                    Err(error) => {
                        self.failed(index, error);
                        continue;
                    }
                }
            }
            if let Some(head) = &self.open[index].head {
                let better = best.is_none_or(|b| {
                    let current = &self.open[b];
                    let current_head = current.head.as_ref().expect("best has a head");
                    order(
                        (&self.open[index].journal.header().seqnum_id, head),
                        (&current.journal.header().seqnum_id, current_head),
                    ) == Ordering::Less
                });
                if better {
                    best = Some(index);
                }
            }
            index += 1;
        }
        best
    }
}

/// journalctl's order of two entries (`compare_with_location` in sd-journal): by sequence
/// number within one sequence-number space, else by the monotonic clock within one boot,
/// else by realtime; ties by the entries' content hash.
pub fn order(a: (&[u8; 16], &EntryMeta), b: (&[u8; 16], &EntryMeta)) -> Ordering {
    let (a_space, a) = a;
    let (b_space, b) = b;
    let primary = if a_space == b_space && a.seqnum != b.seqnum {
        a.seqnum.cmp(&b.seqnum)
    } else if a.boot_id == b.boot_id && a.monotonic != b.monotonic {
        a.monotonic.cmp(&b.monotonic)
    } else {
        a.realtime.cmp(&b.realtime)
    };
    primary.then(a.xor_hash.cmp(&b.xor_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seqnum: u64, realtime: u64, monotonic: u64, boot: u8) -> EntryMeta {
        EntryMeta {
            offset: 0,
            seqnum,
            realtime,
            monotonic,
            boot_id: [boot; 16],
            xor_hash: 0,
        }
    }

    #[test]
    fn order_is_journalctls() {
        let (one, two) = ([1u8; 16], [2u8; 16]);
        // One sequence space: seqnum wins over clocks.
        assert_eq!(
            order((&one, &meta(1, 50, 50, 0)), (&one, &meta(2, 10, 10, 0))),
            Ordering::Less
        );
        // Two spaces, one boot: monotonic.
        assert_eq!(
            order((&one, &meta(9, 50, 5, 0)), (&two, &meta(1, 10, 10, 0))),
            Ordering::Less
        );
        // Two spaces, two boots: realtime.
        assert_eq!(
            order((&one, &meta(1, 50, 5, 0)), (&two, &meta(9, 10, 10, 1))),
            Ordering::Greater
        );
    }
}
