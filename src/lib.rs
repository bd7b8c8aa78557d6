//! sluice: a small, fast log-and-metrics agent that never loses a line it has read.
//!
//! ```text
//!  sources                 bounded flume queues          transform workers        sinks (tokio)
//!  file, syslog, demo, ─▶  Batch(Vec<Event>) per   ─▶   N threads; one stream ─▶  console, file,
//!  stdin, internal_metrics stream key partition          stays on one worker      loki, elasticsearch,
//!                                                                                 remote-write
//!        ▲                                                                             │
//!        └───── checkpointer ◀── acks: a batch is done when every sink delivered ◀─────┘
//!               (data_dir)        or dead-lettered its events
//! ```
//!
//! Module map:
//! - [`event`]: events, values, batches. [`ack`]: delivery acknowledgements and the
//!   committed-prefix rule. [`checkpoint`]: the checkpoint file. [`data_dir`]: the lock
//!   that keeps one agent per data directory.
//! - [`config`]: the YAML config and building it into runtime values.
//! - [`source`], [`transform`], [`sink`]: one folder per component kind, one file per
//!   component; each `mod.rs` holds the closed enum that lists them.
//! - [`pipeline`]: queues, workers and the stop sequence; [`route`]: a sink's
//!   `condition:`. [`agent`]: process lifetime,
//!   signals, reload. [`api`]: `/health`, `/metrics`, `/reload`, `/tap`; [`tap`]: live
//!   copies of the events passing a component.
//! - [`telemetry`]: the agent's own metrics. [`health`]: what `/health` reports.
//!   [`dead_letter`]: the dead-letter file. [`shutdown`]: the stop signal.
//!   [`supervision`]: the policy on component panics (stop, exit non-zero).
//! - [`unit_test`]: `sluice test`, unit tests of a config's transforms.

pub mod ack;
pub mod agent;
pub mod api;
pub mod batch;
pub mod bounds;
pub mod buffer;
pub mod checkpoint;
pub mod config;
pub mod data_dir;
pub mod dead_letter;
pub mod event;
pub mod health;
pub mod limits;
pub mod memory_return;
pub mod otlp;
pub mod pipeline;
pub mod route;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod supervision;
pub mod tap;
pub mod telemetry;
pub mod transform;
pub mod unit_test;
pub mod yaml;

/// A stable 64-bit hash of a string (FNV-1a), for partitioning streams across workers. Not
/// randomised, so a stream goes to the same worker in every run.
pub fn hash_str(text: &str) -> u64 {
    fnv1a(text.as_bytes())
}

/// 64-bit FNV-1a over bytes: stable across runs and versions (saved in checkpoints as file
/// fingerprints, and it decides `sample`'s `key_field` keeps), so it must never change.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
