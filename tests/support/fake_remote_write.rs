//! A fake Prometheus remote-write 1.0 receiver for end-to-end tests: `POST /api/v1/write`
//! with a snappy-compressed `prometheus.WriteRequest`, decoded by message structs written
//! here again from `prompb/remote.proto` and `types.proto` (independently of the agent's),
//! answered `204`. Keeps every sample by series (`name{labels}`), so a test can read a
//! series' last value.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http_request::next_request;

/// `WriteRequest { repeated TimeSeries timeseries = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `Label { string name = 1; string value = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `Sample { double value = 1; int64 timestamp = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Samples by series: the series is its sorted labels (with `__name__`).
pub type Series = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

pub struct FakeRemoteWrite {
    pub addr: SocketAddr,
    series: Arc<Mutex<Series>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRemoteWrite {
    /// Starts listening on 127.0.0.1:0.
    pub fn start() -> FakeRemoteWrite {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake remote write");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let series = Arc::new(Mutex::new(Series::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, e, st) = (series.clone(), errors.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, e, st) = (s.clone(), e.clone(), st.clone());
                        std::thread::spawn(move || serve(stream, s, e, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRemoteWrite {
            addr,
            series,
            errors,
            stop,
        }
    }

    /// `http://127.0.0.1:port/api/v1/write`.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every sample received, by series.
    pub fn series(&self) -> Series {
        self.series.lock().unwrap().clone()
    }

    /// The last value of the series named `name` whose labels include all of `labels`
    /// (exactly one such series must exist).
    pub fn last(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let series = self.series.lock().unwrap();
        let matching: Vec<_> = series
            .iter()
            .filter(|(key, _)| {
                key.iter().any(|(k, v)| k == "__name__" && v == name)
                    && labels
                        .iter()
                        .all(|(lk, lv)| key.iter().any(|(k, v)| k == lk && v == lv))
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}{labels:?} matches several series: {:?}",
            matching.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        matching
            .first()
            .and_then(|(_, samples)| samples.iter().max_by_key(|(t, _)| *t).map(|(_, v)| *v))
    }

    /// Protocol violations seen.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

impl Drop for FakeRemoteWrite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    series: Arc<Mutex<Series>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(request) = next_request(&mut reader, &stop) {
        let decoded = snap::raw::Decoder::new()
            .decompress_vec(&request.body)
            .map_err(|e| format!("snappy: {e}"))
            .and_then(|raw| {
                <WriteRequest as prost::Message>::decode(raw.as_slice())
                    .map_err(|e| format!("protobuf: {e}"))
            });
        let status = match decoded {
            Ok(write) => {
                let mut series = series.lock().unwrap();
                for ts in write.timeseries {
                    let mut key: Vec<(String, String)> =
                        ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                    key.sort();
                    series
                        .entry(key)
                        .or_default()
                        .extend(ts.samples.into_iter().map(|s| (s.timestamp, s.value)));
                }
                204
            }
            Err(error) => {
                errors.lock().unwrap().push(error);
                400
            }
        };
        let _ = write!(writer, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        let _ = writer.flush();
    }
}
