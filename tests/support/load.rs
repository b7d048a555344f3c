//! A bounded, paced load generator for failover tests: `conns` keep-alive connections,
//! together sending about `rate` GETs per second for `duration`, recording for every
//! request when it was sent, the status, the serving origin and lb's attempt list.

use std::{
    net::SocketAddr,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::http::Client;

#[derive(Clone, Debug)]
pub struct Sample {
    /// When the request was sent, from the start of the run.
    pub at: Duration,
    /// How long until its response (or the error) arrived.
    pub took: Duration,
    /// The request's path.
    pub path: String,
    /// 0: no response (connection error).
    pub status: u16,
    pub origin: String,
    pub attempts: String,
}

pub struct Load {
    pub start: Instant,
    threads: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts the load; `path` is requested on every connection.
    pub fn start(
        addr: SocketAddr,
        rate: u32,
        duration: Duration,
        conns: usize,
        path: &str,
    ) -> Self {
        Self::start_with(addr, rate, duration, conns, path, false)
    }

    /// Like [`Load::start`], but every request gets a path of its own,
    /// `{prefix}/{connection}-{n}`, so it can be found in lb's access log.
    pub fn start_tagged(
        addr: SocketAddr,
        rate: u32,
        duration: Duration,
        conns: usize,
        prefix: &str,
    ) -> Self {
        Self::start_with(addr, rate, duration, conns, prefix, true)
    }

    fn start_with(
        addr: SocketAddr,
        rate: u32,
        duration: Duration,
        conns: usize,
        path: &str,
        tagged: bool,
    ) -> Self {
        let start = Instant::now();
        let interval = Duration::from_secs_f64(conns as f64 / f64::from(rate.max(1)));
        let path = Arc::new(path.to_owned());
        let threads = (0..conns)
            .map(|t| {
                let path = Arc::clone(&path);
                std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    let mut client = Client::connect(addr);
                    // Stagger the connections over one interval.
                    let mut next = start + interval.mul_f64(t as f64 / conns as f64);
                    while next < start + duration {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let at = start.elapsed();
                        let this_path = if tagged {
                            format!("{path}/{t}-{}", samples.len())
                        } else {
                            path.to_string()
                        };
                        let raw = format!("GET {this_path} HTTP/1.1\r\nHost: load\r\n\r\n");
                        let sample =
                            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                client.request(&raw)
                            })) {
                                Ok(r) => Sample {
                                    at,
                                    took: start.elapsed() - at,
                                    path: this_path,
                                    status: r.status,
                                    origin: r.header("x-origin").unwrap_or("-").to_owned(),
                                    attempts: r.header("x-lb-attempts").unwrap_or("-").to_owned(),
                                },
                                Err(_) => {
                                    client = Client::connect(addr);
                                    Sample {
                                        at,
                                        took: start.elapsed() - at,
                                        path: this_path,
                                        status: 0,
                                        origin: "-".into(),
                                        attempts: "-".into(),
                                    }
                                }
                            };
                        samples.push(sample);
                        next += interval;
                    }
                    samples
                })
            })
            .collect();
        Self { start, threads }
    }

    /// Waits for the end; all samples, in send order.
    pub fn finish(self) -> Vec<Sample> {
        let mut all: Vec<Sample> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread"))
            .collect();
        all.sort_by_key(|s| s.at);
        all
    }
}

/// Share of `samples` served by `origin`.
pub fn share(samples: &[Sample], origin: &str) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().filter(|s| s.origin == origin).count() as f64 / samples.len() as f64
}
