//! The agent's lifetime: lock the `data_dir`, build the config, start the runtime, the API,
//! the pipelines and the periodic checkpoint writer; handle reloads (SIGHUP, `POST /reload`)
//! and stop cleanly on SIGTERM or SIGINT (or when every source has ended), writing the final
//! checkpoint. A final checkpoint that cannot be written is an error: the process exits
//! non-zero, since the positions on disk are behind what was delivered. So is a component
//! that panicked ([`crate::supervision`]): the agent drains the rest, saves and exits
//! non-zero. Start and reload are transactions (see `reload` below).
//!
//! Owns: process-level orchestration. Never: handles events; writes the checkpoint file
//! other than through [`Checkpoints::save`] (which serialises every save).

use std::collections::BTreeMap;
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
use crate::health::HealthCheck;
use crate::pipeline::{self, RunningPipeline, Shared, StopReason};
use crate::supervision::Supervisor;
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
    /// The name errors show: the file's path, or the embedded config's name.
    pub fn name(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Embedded => config::DEFAULT_CONFIG_NAME.to_owned(),
        }
    }

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

/// Says at start-up what runs and where: the config, `data_dir`, the API, and for the
/// embedded default how to send it a line.
fn announce(source: &ConfigSource, config: &Config) {
    let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    let api = if config.api.enabled {
        format!("http://{}/health", config.api.address)
    } else {
        "disabled".to_owned()
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"), config = %source.name(),
        data_dir = %data_dir.display(), %api, "sluice is running"
    );
    if matches!(source, ConfigSource::Embedded) {
        let syslog =
            std::env::var("SLUICE_SYSLOG_ADDRESS").unwrap_or_else(|_| "127.0.0.1:5514".to_owned());
        let (host, port) = syslog.rsplit_once(':').unwrap_or((&syslog, "5514"));
        tracing::info!(
            "embedded default pipeline: new lines of /var/log/**/*.log, new journal entries \
             (when the journal is readable) and syslog on {syslog} (UDP and TCP) are printed \
             to standard output. Try: \
             logger -n {host} -P {port} --rfc5424 \"hello, sluice\" \
             (`sluice run -c FILE` runs your own config)"
        );
    }
}

/// Runs the agent until it is told to stop. Blocks the calling thread.
pub fn run(source: ConfigSource) -> anyhow::Result<()> {
    let (config, pipelines) = source.load()?;
    let open_files = crate::limits::raise_open_files();
    tracing::debug!(?open_files, "open-file limit");
    let threads = config
        .threads
        .map(|n| n.get())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(crate::memory_return::thread_parking)
            .on_thread_unpark(crate::memory_return::thread_unparked)
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .on_thread_park(crate::memory_return::thread_parking)
            .on_thread_unpark(crate::memory_return::thread_unparked)
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
        dead_letters: DeadLetters::open(&config.data_dir, config.dead_letter_max_bytes)
            .context("cannot start the dead-letter writer")?,
        workers: threads,
        stall_after: Duration::from_secs(config.api.stall_after_secs),
        sources_finished: Arc::new(Notify::new()),
        sources_running: Arc::new(AtomicUsize::new(0)),
        supervisor: Supervisor::new(),
    };
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let deadline = Duration::from_secs(config.shutdown_timeout_secs);
    // Pipelines first (their listeners are bound when `start_all` returns), then the API:
    // an agent whose `/health` answers is ready to take data. An API that cannot listen
    // undoes the start.
    crate::source::syslog::set_exiting(false);
    let started = start_all(pipelines, &shared, deadline).await?;
    if config.api.enabled {
        if let Err(error) = api::serve(&config.api, reload_tx).await {
            stop_all(started.into_values(), deadline, StopReason::Shutdown).await;
            return Err(error);
        }
    }
    announce(&source, &config);
    warn_about_stranded_buffers(&shared, &started);
    let interval = Duration::from_millis(config.checkpoint_interval_ms);
    let mut active = Active {
        config,
        pipelines: started,
    };
    let writer = tokio::spawn(write_checkpoints_periodically(
        checkpoints.clone(),
        interval,
    ));
    let memory_return = tokio::spawn(crate::memory_return::return_freed_memory_periodically());

    serve_until_stopped(&source, &mut active, &shared, reload_rx, deadline).await?;
    // No pipeline follows these: what their sockets still hold is read and counted.
    crate::source::syslog::set_exiting(true);
    stop_all(
        active.pipelines.into_values(),
        deadline,
        StopReason::Shutdown,
    )
    .await;
    writer.abort();
    memory_return.abort();
    let saved = save_checkpoints(&checkpoints, true).await;
    log_drops_of_the_run();
    exit_status(&shared, saved)
}

/// At exit, the events dropped during the run by pipeline and reason, and the datagrams
/// the kernel dropped, in one line: the counters end with the process, and a stop's own
/// drops are counted in its last milliseconds, after any scrape.
fn log_drops_of_the_run() {
    let mut drops = std::collections::BTreeMap::<String, f64>::new();
    for sample in crate::telemetry::registry().samples() {
        let crate::telemetry::SampleValue::Counter(value) = sample.value else {
            continue;
        };
        let label = |name: &str| {
            (sample.labels.iter())
                .find(|(key, _)| key == name)
                .map_or("", |(_, value)| value.as_str())
                .to_owned()
        };
        let key = match sample.name.as_str() {
            "sluice_events_dropped_total" => format!("{}/{}", label("pipeline"), label("reason")),
            "sluice_syslog_kernel_drops_total" => format!("{}/kernel_drops", label("pipeline")),
            _ => continue,
        };
        if value > 0.0 {
            *drops.entry(key).or_default() += value;
        }
    }
    if drops.is_empty() {
        tracing::info!("sluice stopped; no event dropped during this run");
        return;
    }
    let summary: Vec<String> = drops.iter().map(|(key, n)| format!("{key}={n}")).collect();
    tracing::warn!(
        dropped = %summary.join(" "),
        "sluice stopped; events dropped during this run, by pipeline/reason (sluice_events_dropped_total, sluice_syslog_kernel_drops_total)"
    );
}

/// Runs until SIGTERM, SIGINT, a component failure or the end of every source, reloading on
/// SIGHUP and `POST /reload`.
async fn serve_until_stopped(
    source: &ConfigSource,
    active: &mut Active,
    shared: &Shared,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break }
            _ = shared.supervisor.wait() => break,
            _ = hangup.recv() => {
                let _ = reload(source, active, shared, deadline).await;
                after_reload(shared, active);
            }
            Some(reply) = reload_rx.recv() => {
                let outcome = reload(source, active, shared, deadline).await;
                after_reload(shared, active);
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
    Ok(())
}

/// What follows any reload, applied or refused: buffers no sink reads any more are named,
/// and taps on what it removed are ended.
fn after_reload(shared: &Shared, active: &Active) {
    warn_about_stranded_buffers(shared, &active.pipelines);
    crate::tap::end_orphans();
}

/// Warns about disk buffers under `data_dir` that hold undelivered events and that no sink
/// of `running` reads ([`crate::buffer::stranded`]).
fn warn_about_stranded_buffers(shared: &Shared, running: &BTreeMap<String, RunningPipeline>) {
    let Some(data_dir) = shared.checkpoints.data_dir() else {
        return;
    };
    let in_use = running
        .values()
        .flat_map(|pipeline| {
            pipeline
                .disk_buffered_sinks()
                .map(|sink| crate::buffer::directory(data_dir, pipeline.name(), sink))
        })
        .collect();
    crate::buffer::stranded::warn_stranded(data_dir, &in_use);
}

/// The run's outcome after the final drain and checkpoint save.
fn exit_status(shared: &Shared, saved: std::io::Result<bool>) -> anyhow::Result<()> {
    // Checked after the drain too: a worker or source that panicked may have ended its
    // sources (and so the run) before the panic was seen.
    if let Some(component) = shared.supervisor.failure() {
        anyhow::bail!(
            "component {component} panicked: the agent stopped so that it is restarted; \
             batches that were not delivered are read again from the checkpoints"
        );
    }
    if let Err(error) = saved {
        // The save logged it at ERROR; the exit code tells the service manager.
        anyhow::bail!(
            "final checkpoint not saved ({error}): the positions on disk are behind what was \
             delivered, so the next start sends that part again"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The config in force and its running pipelines, by name.
struct Active {
    config: Config,
    pipelines: BTreeMap<String, RunningPipeline>,
}

/// Starts `pipelines` in order. All or nothing: if one fails to start, the ones started
/// before it are stopped again and the error is returned.
async fn start_all(
    pipelines: Vec<BuiltPipeline>,
    shared: &Shared,
    deadline: Duration,
) -> anyhow::Result<BTreeMap<String, RunningPipeline>> {
    let mut started = BTreeMap::new();
    for built in pipelines {
        match pipeline::start(built, shared, deadline).await {
            Ok(running) => {
                started.insert(running.name().to_owned(), running);
            }
            Err(error) => {
                stop_all(started.into_values(), deadline, StopReason::Reload).await;
                return Err(error);
            }
        }
    }
    Ok(started)
}

async fn stop_all(
    running: impl IntoIterator<Item = RunningPipeline>,
    deadline: Duration,
    why: StopReason,
) {
    let stops: Vec<_> = running
        .into_iter()
        .map(|p| tokio::spawn(p.stop(deadline, why)))
        .collect();
    for stop in stops {
        let _ = stop.await;
    }
}

/// Reloads the config as a transaction, at pipeline granularity (like Vector's topology
/// diff): the new config is built first (if it does not build, nothing changes); pipelines
/// whose section did not change keep running untouched (their sockets stay open; a
/// changed one's syslog sockets pass to its successor, `source/syslog/handover.rs`); changed
/// and removed ones drain and stop, positions are saved, and changed and added ones start
/// from them. If one of those fails to start, the ones started are stopped, the previous
/// config's pipelines are started again, and the error is returned.
async fn reload(
    source: &ConfigSource,
    active: &mut Active,
    shared: &Shared,
    deadline: Duration,
) -> Result<(), String> {
    let (new_config, mut built) = match source.load() {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "reload refused: the new config does not build; the running pipelines keep going");
            return Err(format!("{error:#}"));
        }
    };
    warn_about_top_level_changes(&active.config, &new_config);
    let (old, running) = (&active.config.pipelines, &active.pipelines);
    // A pipeline that is not running (its restart after a failed reload failed too) is
    // started again even if its section did not change.
    let changed = |name: &str| match (old.get(name), new_config.pipelines.get(name)) {
        (Some(before), Some(after)) => !before.same_settings(after) || !running.contains_key(name),
        _ => true,
    };
    let to_stop: Vec<String> = old.keys().filter(|n| changed(n)).cloned().collect();
    built.retain(|p| changed(&p.name));
    let unchanged: Vec<&String> = old.keys().filter(|n| !changed(n)).collect();
    if to_stop.is_empty() && built.is_empty() {
        tracing::info!("reloading the config: no pipeline changed");
        active.config = new_config;
        return Ok(());
    }
    let starting: Vec<&str> = built.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(stopping = ?to_stop, starting = ?starting, unchanged = ?unchanged, "reloading the config");
    let stopping: Vec<_> = to_stop
        .iter()
        .filter_map(|name| active.pipelines.remove(name))
        .collect();
    let (replaced, removed): (Vec<_>, Vec<_>) = stopping
        .into_iter()
        .partition(|p| new_config.pipelines.contains_key(p.name()));
    let removed_names: Vec<String> = removed.iter().map(|p| p.name().to_owned()).collect();
    tokio::join!(
        stop_all(replaced, deadline, StopReason::Reload),
        stop_all(removed, deadline, StopReason::Removed),
    );
    // A removed pipeline's series leave `/metrics` (as Vector expires them); one added
    // again later starts from zero, which Prometheus reads as a counter reset.
    for name in &removed_names {
        crate::telemetry::registry().forget_pipeline(name);
    }
    // A failure is logged and retried by the periodic writer; the new pipelines start from
    // the positions in memory either way.
    let _ = save_checkpoints(&shared.checkpoints, true).await;
    let result = match start_all(built, shared, deadline).await {
        Ok(started) => {
            active.pipelines.extend(started);
            active.config = new_config;
            reload_health().ok();
            Ok(())
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "reload failed: a new pipeline did not start; starting the previous config's pipelines again");
            restart_previous(source, active, &to_stop, shared, deadline).await;
            Err(format!("{error:#}"))
        }
    };
    // Listening sockets a restarted pipeline took over stay; the others close now.
    crate::source::syslog::release_unclaimed();
    result
}

/// Starts the pipelines `names` of the config in force again, after a failed reload.
async fn restart_previous(
    source: &ConfigSource,
    active: &mut Active,
    names: &[String],
    shared: &Shared,
    deadline: Duration,
) {
    let restarted = match active
        .config
        .build_selected(&source.name(), |name| names.iter().any(|n| n == name))
    {
        Ok(built) => start_all(built, shared, deadline).await,
        Err(error) => Err(error),
    };
    match restarted {
        Ok(started) => active.pipelines.extend(started),
        Err(error) => {
            tracing::error!(
                error = %format!("{error:#}"),
                pipelines = ?names,
                "the previous pipelines did not start again either: they stay stopped until a reload or restart succeeds"
            );
            reload_health().fail(format!(
                "pipelines {names:?} stopped: neither the new nor the previous config started them: {error:#}"
            ));
        }
    }
}

/// `/health` fails under `agent/reload` while a failed reload left pipelines stopped.
fn reload_health() -> HealthCheck {
    HealthCheck::new("agent/reload")
}

/// Settings outside `pipelines:` are read once, at start.
fn warn_about_top_level_changes(before: &Config, after: &Config) {
    let top_level = |config: &Config| Config {
        pipelines: Default::default(),
        tests: Vec::new(),
        ..config.clone()
    };
    if top_level(before) != top_level(after) {
        tracing::warn!("reload: settings outside pipelines (data_dir, api, threads, timeouts) changed; they take effect at the next restart");
    }
}

fn register_agent_metrics(checkpoints: &Checkpoints) {
    // At 0 from the start, so an alert on it has a series before anything goes wrong.
    crate::telemetry::batches_abandoned();
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

/// Saves changed positions every `interval`, backing off so that saving them (collecting,
/// encoding and writing) takes at most a twentieth of a core (10,000 tracked files).
/// Waiting for the disk paces it as well: one write at a time. A failed write is tried
/// again at the next tick.
async fn write_checkpoints_periodically(checkpoints: Checkpoints, interval: Duration) {
    loop {
        // Failures are counted, logged and reported to /health by the save itself.
        let _ = save_checkpoints(&checkpoints, false).await;
        tokio::time::sleep(interval.max(checkpoints.save_cost() * 20)).await;
    }
}
