//! Building a parsed [`Config`]: every pipeline's components built and checked, component
//! ids assigned, and every error collected (each naming the file, line and key) so that a
//! config either builds completely or is refused with all its errors at once.
//!
//! Owns: [`Config::build`] and [`Config::build_selected`], ids, the shared-listener check.
//! Never: starts anything.

use std::collections::BTreeMap;

use super::{Config, PipelineConfig};
use crate::bounds;
use crate::event::Kinds;
use crate::route::{Route, Routed};
use crate::sink::{Sink, SinkConfig};
use crate::source::{Source, SourceConfig};
use crate::telemetry::ComponentMetrics;
use crate::transform::{Transform, TransformConfig, TransformContext};
use crate::yaml::Named;

/// Sources that would listen on one socket (the second could not bind it): one error each,
/// located, with the answer: one pipeline whose sinks have conditions. (Literal addresses
/// only: `0.0.0.0:514` and `127.0.0.1:514` still meet at start-up as `address in use`.)
pub fn shared_listeners(config: &Config, file: &str) -> Vec<String> {
    // Socket → who listens on it (`None`: the API).
    let mut first: BTreeMap<String, Option<String>> = BTreeMap::new();
    if config.api.enabled {
        first.insert(format!("tcp {}", config.api.address), None);
    }
    let mut errors = Vec::new();
    for (name, pipeline) in &config.pipelines {
        for (i, source) in pipeline.sources.iter().enumerate() {
            let key = match &source.config {
                SourceConfig::Syslog(syslog) => {
                    let socket = match (&syslog.address, &syslog.path) {
                        (Some(address), _) => address.clone(),
                        (None, Some(path)) => path.display().to_string(),
                        (None, None) => continue,
                    };
                    format!("{} {socket}", format!("{:?}", syslog.mode).to_lowercase())
                }
                SourceConfig::OpenTelemetry(otlp) => format!("tcp {}", otlp.address),
                _ => continue,
            };
            let here = format!("pipelines.{name}.sources[{i}]");
            match first.get(&key) {
                None => {
                    first.insert(key, Some(format!("{here} (line {})", source.line)));
                }
                Some(None) => errors.push(format!(
                    "{file}:{}: {here}: {key} is api.address: give the source or the API \
                     another port",
                    source.line
                )),
                Some(Some(other)) => errors.push(format!(
                    "{file}:{}: {here}: {key} is read by {other} already: a socket is read by one \
                     source; to send its events to different sinks, use one pipeline with a \
                     `condition:` on each sink (README: Routing)",
                    source.line
                )),
            }
        }
    }
    errors
}

/// A component after building, with its id.
pub struct Built<T> {
    /// Component id: its `name:`, else `<type>` (or `<type>_<index>` when the type repeats).
    pub id: String,
    /// The runtime value.
    pub component: T,
}

/// A pipeline whose every component was built.
pub struct BuiltPipeline {
    /// Pipeline name.
    pub name: String,
    /// Built sources.
    pub sources: Vec<Built<Source>>,
    /// Built transforms, in order.
    pub transforms: Vec<Built<Transform>>,
    /// Built sinks.
    pub sinks: Vec<Built<Sink>>,
    /// The sinks with a `condition:`, by id.
    pub routes: BTreeMap<String, Route>,
    /// Queue capacity in batches.
    pub queue_batches: usize,
    /// The kinds of event that can reach the sinks (from the sources, through the
    /// transforms).
    pub carried: Kinds,
    /// The kinds carried that no sink takes.
    pub unsent: Kinds,
    /// The kinds of event that, emitted by a source, reach a sink (as they are, or as what
    /// the transforms make of them: logs a `log_to_metric` counts).
    pub delivered: Kinds,
}

/// Ids for a list of components: the user's `name:`, else the type, with `_<index>` when
/// more than one unnamed component has that type. Duplicate ids are an error. Source ids are
/// part of checkpoint keys: name sources to keep positions stable when adding more of a type.
fn component_ids<T>(
    list: &[Named<T>],
    type_name: impl Fn(&T) -> &'static str,
    what: &str,
) -> Result<Vec<String>, (usize, String)> {
    let mut ids = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let kind = type_name(&item.config);
        let repeats = list
            .iter()
            .filter(|o| o.name.is_none() && type_name(&o.config) == kind)
            .count()
            > 1;
        let id = match &item.name {
            Some(name) => name.clone(),
            None if repeats => format!("{kind}_{i}"),
            None => kind.to_owned(),
        };
        if !valid_name(&id) {
            let why = format!("{what}[{i}]: name {id:?} may only use letters, digits, '_' and '-'");
            return Err((item.line, why));
        }
        if let Some(first) = ids.iter().position(|other| *other == id) {
            let line = list[first].line;
            let why =
                format!("{what}[{i}]: two {what} are named {id:?} (the first on line {line})");
            return Err((item.line, why));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn located<T>(file: &str, line: usize, path: &str, result: anyhow::Result<T>) -> anyhow::Result<T> {
    result.map_err(|error| anyhow::anyhow!("{file}:{line}: {path}: {error:#}"))
}

impl Config {
    /// Builds every pipeline. Nothing is started; errors name the file, line and component.
    pub fn build(&self, file: &str) -> anyhow::Result<Vec<BuiltPipeline>> {
        anyhow::ensure!(
            !self.pipelines.is_empty(),
            "{file}: pipelines: at least one pipeline is needed"
        );
        let mut errors = Vec::new();
        if let Err(error) = self.check_bounds() {
            errors.push(format!("{file}: {error:#}"));
        }
        errors.extend(shared_listeners(self, file));
        let built = self.build_each(file, |_| true, &mut errors);
        all_or_errors(built, errors)
    }

    /// Refuses top-level values `run` cannot honour. (Numbers are checked as the file is
    /// read, `bounds::within`, so their errors name the line.)
    fn check_bounds(&self) -> anyhow::Result<()> {
        if let Some(token) = &self.api.reload_token {
            bounds::check("api.reload_token (length)", token.len(), 16..=4096)?;
        }
        Ok(())
    }

    /// Builds the pipelines whose name `wanted` accepts (a reload that restarts some).
    /// Every error found is reported, not only the first.
    pub fn build_selected(
        &self,
        file: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Vec<BuiltPipeline>> {
        let mut errors = Vec::new();
        let built = self.build_each(file, wanted, &mut errors);
        all_or_errors(built, errors)
    }

    /// Builds what it can, pushing each error (located) onto `errors`.
    fn build_each(
        &self,
        file: &str,
        wanted: impl Fn(&str) -> bool,
        errors: &mut Vec<String>,
    ) -> Vec<BuiltPipeline> {
        let mut out = Vec::new();
        for (name, pipeline) in self.pipelines.iter().filter(|(name, _)| wanted(name)) {
            let at = format!("pipelines.{name}");
            let n_errors = errors.len();
            if !valid_name(name) {
                errors.push(format!(
                    "{file}: {at}: pipeline names may only use letters, digits, '_' and '-'"
                ));
            }
            if pipeline.sources.is_empty() {
                errors.push(format!(
                    "{file}: {at}.sources: at least one source is needed"
                ));
            }
            if pipeline.sinks.is_empty() {
                errors.push(format!("{file}: {at}.sinks: at least one sink is needed"));
            }
            if let Some(built) = self.build_pipeline(file, name, pipeline, errors) {
                if errors.len() == n_errors {
                    out.push(built);
                }
            }
        }
        out
    }

    fn build_pipeline(
        &self,
        file: &str,
        name: &str,
        pipeline: &PipelineConfig,
        errors: &mut Vec<String>,
    ) -> Option<BuiltPipeline> {
        let at = format!("pipelines.{name}");
        let mut ids = |r: Result<Vec<String>, (usize, String)>| match r {
            Ok(ids) => Some(ids),
            Err((line, why)) => {
                errors.push(format!("{file}:{line}: {at}.{why}"));
                None
            }
        };
        let source_ids = ids(component_ids(
            &pipeline.sources,
            SourceConfig::type_name,
            "sources",
        ));
        let transform_ids = ids(component_ids(
            &pipeline.transforms,
            TransformConfig::type_name,
            "transforms",
        ));
        let sink_ids = ids(component_ids(
            &pipeline.sinks,
            |sink: &Routed<SinkConfig>| sink.inner.type_name(),
            "sinks",
        ));
        let (source_ids, transform_ids, sink_ids) = (source_ids?, transform_ids?, sink_ids?);
        // A name given to components of two kinds: a tap on it would mix both.
        let named = (names(&pipeline.sources, "sources"))
            .chain(names(&pipeline.transforms, "transforms"))
            .chain(names(&pipeline.sinks, "sinks"));
        let mut seen: Vec<(&str, usize, &String, usize)> = Vec::new();
        for (what, i, name, line) in named {
            if let Some((first_what, j, _, first_line)) = seen.iter().find(|s| s.2 == name) {
                errors.push(format!(
                    "{file}:{line}: {at}.{what}[{i}]: name {name:?} is also {first_what}[{j}]'s \
                     (line {first_line}): give components of different kinds different names \
                     (a tap or a log line would not tell them apart)"
                ));
                return None;
            }
            seen.push((what, i, name, line));
        }
        let mut built = BuiltPipeline {
            name: name.to_owned(),
            sources: Vec::new(),
            transforms: Vec::new(),
            sinks: Vec::new(),
            routes: BTreeMap::new(),
            queue_batches: pipeline.queue_batches.get(),
            carried: Kinds::NONE,
            unsent: Kinds::NONE,
            delivered: Kinds::NONE,
        };
        let mut keep = |path: String, line: usize, result: anyhow::Result<()>| {
            if let Err(error) = located(file, line, &path, result) {
                errors.push(format!("{error:#}"));
            }
        };
        for (i, (item, id)) in pipeline.sources.iter().zip(source_ids).enumerate() {
            let result = item.config.build().map(|component| {
                built.sources.push(Built { id, component });
            });
            keep(format!("{at}.sources[{i}]"), item.line, result);
        }
        for (i, (item, id)) in pipeline.transforms.iter().zip(transform_ids).enumerate() {
            let ctx = TransformContext {
                pipeline: name.to_owned(),
                id: id.clone(),
                metrics: ComponentMetrics::new(name, "transform", &id),
            };
            let result = item.config.build(&ctx).map(|component| {
                built.transforms.push(Built { id, component });
            });
            keep(format!("{at}.transforms[{i}]"), item.line, result);
        }
        // What the transforms make of `kinds` (log_to_metric: metrics too, or instead).
        let after_transforms =
            |kinds: Kinds| (pipeline.transforms.iter()).fold(kinds, |k, t| t.config.kinds_out(k));
        let emitted = (pipeline.sources.iter()).fold(Kinds::NONE, |k, s| k.or(s.config.kinds()));
        let carried = after_transforms(emitted);
        let mut taken = Kinds::NONE;
        for (i, (item, id)) in pipeline.sinks.iter().zip(sink_ids).enumerate() {
            let route = item.config.build_route();
            let result = item.config.inner.build().and_then(|component| {
                let kinds = component.kinds();
                anyhow::ensure!(
                    !kinds.and(carried).is_empty(),
                    "a {} sink takes only {kinds}, and this pipeline carries only {carried}: it \
                     would never send anything",
                    component.type_name()
                );
                taken = taken.or(kinds);
                if let Some(route) = route? {
                    built.routes.insert(id.clone(), route);
                }
                built.sinks.push(Built { id, component });
                Ok(())
            });
            keep(format!("{at}.sinks[{i}]"), item.line, result);
        }
        built.carried = carried;
        built.unsent = carried.without(taken);
        // Does a sink take what the transforms make of each kind a source could emit?
        let reaches_a_sink = |kinds: Kinds| !after_transforms(kinds).and(taken).is_empty();
        built.delivered = Kinds {
            logs: reaches_a_sink(Kinds::LOGS),
            metrics: reaches_a_sink(Kinds::METRICS),
        };
        Some(built)
    }
}

/// `(list name, index, name, line)` of the components of `list` given a `name:`.
fn names<'a, T>(
    list: &'a [Named<T>],
    what: &'static str,
) -> impl Iterator<Item = (&'static str, usize, &'a String, usize)> + 'a {
    (list.iter().enumerate()).filter_map(move |(i, c)| Some((what, i, c.name.as_ref()?, c.line)))
}

impl BuiltPipeline {
    /// What to say when some kind of event the pipeline carries reaches no sink that
    /// takes it (an OpenTelemetry source's metrics in a pipeline whose only sink is Loki):
    /// such events are counted as dropped, `reason="no_sink"` (the OpenTelemetry source
    /// refuses them before: `otlp_rejected`).
    pub fn unsent_warning(&self) -> Option<String> {
        (!self.unsent.is_empty()).then(|| {
            format!(
                "pipeline {}: {} can reach it, but none of its sinks takes {}: they are \
                 dropped, counted in sluice_events_dropped_total (reason \"no_sink\"; an \
                 opentelemetry source answers them as rejected, \"otlp_rejected\")",
                self.name, self.unsent, self.unsent
            )
        })
    }
}

/// The built pipelines when nothing failed; else one error that lists every failure.
fn all_or_errors(
    built: Vec<BuiltPipeline>,
    errors: Vec<String>,
) -> anyhow::Result<Vec<BuiltPipeline>> {
    match errors.len() {
        0 => Ok(built),
        1 => Err(anyhow::anyhow!("{}", errors[0])),
        n => Err(anyhow::anyhow!("{n} errors:\n  {}", errors.join("\n  "))),
    }
}
