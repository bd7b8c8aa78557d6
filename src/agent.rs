//! The agent's lifetime: lock the `data_dir`, build the config, start the runtime, the API,
//! the pipelines and the periodic checkpoint writer; handle reloads (SIGHUP, `POST /reload`)
//! and stop cleanly on SIGTERM or SIGINT (or when every source has ended), writing the final
//! checkpoint. A final checkpoint that cannot be written is an error: the process exits
//! non-zero, since the positions on disk are behind what was delivered.
//!
//! Owns: process-level orchestration. Never: handles events; writes the checkpoint file
//! other than through [`Checkpoints::save`] (which serialises every save).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};

use crate::api::{self, ReloadRequest};
use crate::checkpoint::Checkpoints;
use crate::config::{self, BuiltPipeline, Config};
use crate::data_dir::DataDirLock;
use crate::dead_letter::DeadLetters;
use crate::pipeline::{self, RunningPipeline, Shared};
use crate::telemetry::registry;

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A YAML file.
    File(PathBuf),
    /// The embedded default pipeline.
    Embedded,
}

impl ConfigSource {
    /// Reads, parses and builds the config. Nothing starts.
    pub fn load(&self) -> anyhow::Result<(Config, Vec<BuiltPipeline>)> {
        let (config, name) = match self {
            ConfigSource::File(path) => config::load(path)?,
            ConfigSource::Embedded => (
                config::parse(config::DEFAULT_CONFIG, config::DEFAULT_CONFIG_NAME)?,
                config::DEFAULT_CONFIG_NAME.to_owned(),
            ),
        };
        let built = config.build(&name)?;
        Ok((config, built))
    }
}

/// Runs the agent until it is told to stop. Blocks the calling thread.
pub fn run(source: ConfigSource) -> anyhow::Result<()> {
    let (config, pipelines) = source.load()?;
    let threads = config
        .threads
        .map(|n| n.get())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let result = runtime.block_on(run_async(source, config, pipelines, threads));
    // A sink stuck in a blocking write (a full pipe, a hung NFS file) must not hold the
    // process: its batches were not settled, so they are read again on the next start.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run_async(
    source: ConfigSource,
    config: Config,
    pipelines: Vec<BuiltPipeline>,
    threads: usize,
) -> anyhow::Result<()> {
    // Held until this function returns: across reloads and the final save.
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let checkpoints = Checkpoints::open(&config.data_dir)
        .with_context(|| format!("data_dir {} is not usable", config.data_dir.display()))?;
    register_agent_metrics(&checkpoints);
    let shared = Shared {
        checkpoints: checkpoints.clone(),
        dead_letters: DeadLetters::open(&config.data_dir, config.dead_letter_max_bytes),
        workers: threads,
        stall_after: Duration::from_secs(config.api.stall_after_secs),
        sources_finished: Arc::new(Notify::new()),
        sources_running: Arc::new(AtomicUsize::new(0)),
    };
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    if config.api.enabled {
        api::serve(config.api.address, reload_tx).await?;
    }
    let mut running = start_all(pipelines, &shared)?;
    let writer = tokio::spawn(write_checkpoints_periodically(
        checkpoints.clone(),
        Duration::from_millis(config.checkpoint_interval_ms.max(10)),
    ));
    let deadline = Duration::from_secs(config.shutdown_timeout_secs);

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break }
            _ = hangup.recv() => {
                running = reload(&source, running, &shared, deadline).await.0;
            }
            Some(reply) = reload_rx.recv() => {
                let (now_running, outcome) = reload(&source, running, &shared, deadline).await;
                running = now_running;
                let _ = reply.send(outcome);
            }
            _ = shared.sources_finished.notified() => {
                if shared.sources_running.load(Ordering::SeqCst) == 0 {
                    tracing::info!("every source has ended: draining and stopping");
                    break;
                }
            }
        }
    }
    stop_all(running, deadline).await;
    writer.abort();
    if let Err(error) = save_checkpoints(&checkpoints, true).await {
        // The save logged it at ERROR; the exit code tells the service manager.
        anyhow::bail!(
            "final checkpoint not saved ({error}): the positions on disk are behind what was \
             delivered, so the next start sends that part again"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

fn start_all(
    pipelines: Vec<BuiltPipeline>,
    shared: &Shared,
) -> anyhow::Result<Vec<RunningPipeline>> {
    pipelines
        .into_iter()
        .map(|p| pipeline::start(p, shared))
        .collect()
}

async fn stop_all(running: Vec<RunningPipeline>, deadline: Duration) {
    let stops: Vec<_> = running
        .into_iter()
        .map(|p| tokio::spawn(p.stop(deadline)))
        .collect();
    for stop in stops {
        let _ = stop.await;
    }
}

/// Rebuilds the config; if it builds, drains the old pipelines (so their data is delivered
/// and committed) and starts the new ones from the committed positions. If it does not,
/// the old pipelines keep running.
async fn reload(
    source: &ConfigSource,
    running: Vec<RunningPipeline>,
    shared: &Shared,
    deadline: Duration,
) -> (Vec<RunningPipeline>, Result<(), String>) {
    let built = match source.load() {
        Ok((_, built)) => built,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "reload refused: the new config does not build; the running pipelines keep going");
            return (running, Err(format!("{error:#}")));
        }
    };
    tracing::info!("reloading the config");
    stop_all(running, deadline).await;
    // A failure is logged and retried by the periodic writer; the new pipelines start from
    // the positions in memory either way.
    let _ = save_checkpoints(&shared.checkpoints, true).await;
    match start_all(built, shared) {
        Ok(started) => (started, Ok(())),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "reload failed while starting pipelines");
            (Vec::new(), Err(format!("{error:#}")))
        }
    }
}

fn register_agent_metrics(checkpoints: &Checkpoints) {
    registry()
        .gauge(
            "sluice_build_info",
            "Build information; the value is always 1.",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1);
    let age = checkpoints.clone();
    registry().gauge_fn(
        "sluice_checkpoint_age_seconds",
        "Seconds since the checkpoint file was last written, or found with nothing to write; grows while writes fail.",
        &[],
        move || age.age().as_secs_f64(),
    );
}

/// Writes the checkpoint file if anything changed, an earlier write failed, or `force`, on
/// a blocking thread. [`Checkpoints::save`] counts, logs and reports the outcome; saves
/// from here and from the periodic writer run one at a time.
async fn save_checkpoints(checkpoints: &Checkpoints, force: bool) -> std::io::Result<bool> {
    let checkpoints = checkpoints.clone();
    tokio::task::spawn_blocking(move || checkpoints.save(force))
        .await
        .unwrap_or_else(|error| {
            Err(std::io::Error::other(format!(
                "checkpoint save crashed: {error}"
            )))
        })
}

/// Saves changed positions every `interval`, backing off so that encoding them takes at
/// most a tenth of a core (10,000 tracked files). Waiting for the disk paces it as well:
/// one write at a time. A failed write is tried again at the next tick.
async fn write_checkpoints_periodically(checkpoints: Checkpoints, interval: Duration) {
    loop {
        // Failures are counted, logged and reported to /health by the save itself.
        let _ = save_checkpoints(&checkpoints, false).await;
        tokio::time::sleep(interval.max(checkpoints.encode_cost() * 10)).await;
    }
}
