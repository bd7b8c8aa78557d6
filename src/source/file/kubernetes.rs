//! Kubernetes container log formats and pod labels: CRI lines (containerd, CRI-O), docker
//! `json-file` lines, and the namespace / pod / container names encoded in kubelet's log
//! paths.
//!
//! CRI (<https://github.com/kubernetes/design-proposals-archive/blob/main/node/kubelet-cri-logging.md>):
//! `<RFC 3339 time> <stdout|stderr> <P|F>[:tags] <log>`; `P` marks a partial line that
//! continues in the next line of the same stream, `F` the last part.
//! Docker json-file: `{"log":"text\n","stream":"stdout","time":"<RFC 3339>"}`; a `log`
//! without a trailing `\n` is a partial line.
//!
//! Owns: parsing one physical line, reassembling partial lines, and path labels (pure
//! functions on strings). Never: reads files, fails on bad input (a line that does not parse
//! is kept as it is and counted by the caller).

use crate::event::Timestamp;

/// One decoded container log line.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerLine<'a> {
    /// When the runtime wrote it.
    pub timestamp: Option<Timestamp>,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// True when the line continues in the next one.
    pub partial: bool,
    /// The text (without the trailing newline).
    pub message: std::borrow::Cow<'a, str>,
}

fn parse_time(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| Timestamp::from_datetime(&time))
}

/// Parses a CRI line; `None` when it is not one.
pub fn parse_cri(line: &str) -> Option<ContainerLine<'_>> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let (tag, message) = rest.split_once(' ').unwrap_or((rest, ""));
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return None,
    };
    Some(ContainerLine {
        timestamp: Some(parse_time(time)?),
        stream,
        partial,
        message: message.into(),
    })
}

#[derive(serde::Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<std::borrow::Cow<'a, str>>,
}

/// Parses a docker json-file line; `None` when it is not one. The stream is `stdout`,
/// `stderr`, or `stdout` when absent.
pub fn parse_docker(line: &str) -> Option<ContainerLine<'static>> {
    let parsed: DockerLine<'_> = serde_json::from_str(line).ok()?;
    let stream = match parsed.stream.as_deref() {
        Some("stderr") => "stderr",
        _ => "stdout",
    };
    let (message, partial) = match parsed.log.strip_suffix('\n') {
        Some(text) => (text.strip_suffix('\r').unwrap_or(text).to_owned(), false),
        None => (parsed.log.into_owned(), true),
    };
    Some(ContainerLine {
        timestamp: parsed.time.as_deref().and_then(parse_time),
        stream,
        partial,
        message: message.into(),
    })
}

/// Pod labels derived from a kubelet log path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLabels {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID (only in `/var/log/pods/` paths).
    pub pod_uid: Option<String>,
    /// Container name.
    pub container: String,
}

/// Labels from `.../pods/<namespace>_<pod>_<uid>/<container>/<N>.log` or
/// `.../containers/<pod>_<namespace>_<container>-<container id>.log` (kubelet writes them
/// under `/var/log`; a DaemonSet may mount it elsewhere). Namespace and
/// pod names are DNS labels, which cannot contain `_`, so splitting on `_` is exact.
pub fn pod_labels(path: &str) -> Option<PodLabels> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let n = parts.len();
    if n >= 4 && parts[n - 4] == "pods" {
        let [pod_dir, container, file] = parts.get(n - 3..)? else {
            return None;
        };
        if !file.ends_with(".log") && !file.contains(".log.") {
            return None;
        }
        let mut fields = pod_dir.splitn(3, '_');
        let (namespace, pod, uid) = (fields.next()?, fields.next()?, fields.next()?);
        if namespace.is_empty() || pod.is_empty() || uid.is_empty() || container.is_empty() {
            return None;
        }
        return Some(PodLabels {
            namespace: namespace.into(),
            pod: pod.into(),
            pod_uid: Some(uid.into()),
            container: (*container).into(),
        });
    }
    if n >= 2 && parts[n - 2] == "containers" {
        let [file] = parts.get(n - 1..)? else {
            return None;
        };
        let stem = file.strip_suffix(".log")?;
        let mut fields = stem.splitn(3, '_');
        let (pod, namespace, rest) = (fields.next()?, fields.next()?, fields.next()?);
        let (container, id) = rest.rsplit_once('-')?;
        if pod.is_empty() || namespace.is_empty() || container.is_empty() || id.is_empty() {
            return None;
        }
        return Some(PodLabels {
            namespace: namespace.into(),
            pod: pod.into(),
            pod_uid: None,
            container: container.into(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cri(line: &str, expected: Option<(&str, bool, &str)>) {
        let parsed = parse_cri(line);
        let got = parsed
            .as_ref()
            .map(|p| (p.stream, p.partial, p.message.as_ref()));
        assert_eq!(got, expected, "{line:?}");
    }

    #[test]
    fn cri_lines() {
        check_cri(
            "2016-10-06T00:17:09.669794202Z stdout F hello world",
            Some(("stdout", false, "hello world")),
        );
        check_cri(
            "2016-10-06T00:17:09.669794202Z stderr P part one ",
            Some(("stderr", true, "part one ")),
        );
        check_cri(
            "2016-10-06T00:17:09.669794202Z stdout F",
            Some(("stdout", false, "")),
        );
        check_cri(
            "2016-10-06T00:17:09.669794202Z stdout F:x tagged",
            Some(("stdout", false, "tagged")),
        );
        check_cri("2016-10-06T00:17:09Z stdin F nope", None);
        check_cri("yesterday stdout F nope", None);
        check_cri("plain text line", None);
        check_cri("", None);
    }

    #[test]
    fn cri_timestamp() {
        let line = parse_cri("2016-10-06T00:17:09.669794202Z stdout F x").unwrap();
        assert_eq!(line.timestamp, Some(Timestamp(1_475_713_029_669_794_202)));
    }

    fn check_docker(line: &str, expected: Option<(&str, bool, &str)>) {
        let parsed = parse_docker(line);
        let got = parsed
            .as_ref()
            .map(|p| (p.stream, p.partial, p.message.as_ref()));
        assert_eq!(got, expected, "{line:?}");
    }

    #[test]
    fn docker_lines() {
        check_docker(
            r#"{"log":"hello\n","stream":"stdout","time":"2019-01-01T00:00:00.5Z"}"#,
            Some(("stdout", false, "hello")),
        );
        check_docker(
            r#"{"log":"part","stream":"stderr","time":"2019-01-01T00:00:00Z"}"#,
            Some(("stderr", true, "part")),
        );
        check_docker(
            r#"{"log":"q\"uote\u00e9\n"}"#,
            Some(("stdout", false, "q\"uoteé")),
        );
        check_docker(r#"{"stream":"stdout"}"#, None);
        check_docker("not json", None);
    }

    fn check_path(path: &str, expected: Option<(&str, &str, Option<&str>, &str)>) {
        let got = pod_labels(path);
        let got = got.as_ref().map(|l| {
            (
                l.namespace.as_str(),
                l.pod.as_str(),
                l.pod_uid.as_deref(),
                l.container.as_str(),
            )
        });
        assert_eq!(got, expected, "{path}");
    }

    #[test]
    fn path_labels() {
        check_path(
            "/var/log/pods/kube-system_coredns-5d78c9869d-abcde_0f1e2d3c-aaaa-bbbb-cccc-123456789012/coredns/0.log",
            Some(("kube-system", "coredns-5d78c9869d-abcde", Some("0f1e2d3c-aaaa-bbbb-cccc-123456789012"), "coredns")),
        );
        check_path(
            "/var/log/containers/web-7f9c_default_nginx-0123456789abcdef.log",
            Some(("default", "web-7f9c", None, "nginx")),
        );
        check_path(
            "/var/log/containers/web_default_side-car-ab12.log",
            Some(("default", "web", None, "side-car")),
        );
        check_path("/var/log/pods/broken/container/0.log", None);
        check_path("/var/log/pods/ns_pod_uid/0.log", None);
        check_path("/var/log/containers/nounderscore.log", None);
        check_path("/var/log/syslog", None);
        check_path("", None);
    }
}
