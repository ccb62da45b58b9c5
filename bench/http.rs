//! The load generator: a closed loop of N workers, each with one keep-alive HTTP/1.1 connection
//! (TCP_NODELAY), sending pre-built requests and timing each answer. It runs on one thread
//! (tokio's current-thread runtime) and parses only the status line and Content-Length, so it
//! takes as little as possible of the two cores it shares with the server. wrk cannot sign a
//! distinct body per request; this is its equivalent for unique, validly signed events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Writes one request and reads its whole answer (no pipelining).
    async fn send(&mut self, request: &[u8]) -> std::io::Result<Response> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if let Some(head_end) = find(&self.buf, b"\r\n\r\n") {
                let (status, length) = parse_head(&self.buf[..head_end])?;
                let total = head_end + 4 + length;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                return Ok(Response {
                    status,
                    body: self.buf[head_end + 4..total].to_vec(),
                });
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> std::io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> std::io::Result<(u16, usize)> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| bad("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                "chunked answers are not expected from the webhook route",
            ));
        }
    }
    Ok((status, length))
}

/// A complete `POST` request, built before the clock starts.
pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: mmc-bench\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub struct Report {
    /// One per answered request, in completion order.
    pub latencies: Vec<Duration>,
    /// Answers `accept` took (for intake: 200 and not a duplicate).
    pub ok: usize,
    /// Other answers, I/O errors and timeouts.
    pub errors: usize,
    pub first_error: Option<String>,
    /// Requests sent: never more than asked for; fewer if the time cap hit.
    pub sent: usize,
    pub elapsed: Duration,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The q-quantile (0..=1) of the recorded latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

/// Sends each of `requests` once over `concurrency` connections, stopping early after `cap`.
/// Connections are opened before the clock starts.
pub fn run(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    cap: Duration,
    accept: fn(&Response) -> bool,
) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut connections = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            connections.push(Connection::open(addr).await?);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for mut connection in connections {
            let (next, requests) = (next.clone(), requests.clone());
            workers.spawn(async move {
                let mut w = Worker::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || started.elapsed() > cap {
                        break;
                    }
                    w.sent += 1;
                    let t0 = Instant::now();
                    let answer = tokio::time::timeout(
                        Duration::from_secs(30),
                        connection.send(&requests[i]),
                    )
                    .await;
                    let took = t0.elapsed();
                    match answer {
                        Ok(Ok(response)) => {
                            w.latencies.push(took);
                            if accept(&response) {
                                w.ok += 1;
                            } else {
                                w.error(format!(
                                    "HTTP {}: {}",
                                    response.status,
                                    String::from_utf8_lossy(&response.body)
                                ));
                            }
                        }
                        Ok(Err(e)) => {
                            w.error(format!("I/O: {e}"));
                            match Connection::open(addr).await {
                                Ok(c) => connection = c,
                                Err(_) => break,
                            }
                        }
                        Err(_) => {
                            w.error("no answer within 30 s".to_owned());
                            break;
                        }
                    }
                }
                w
            });
        }
        let mut report = Report {
            latencies: Vec::with_capacity(requests.len()),
            ok: 0,
            errors: 0,
            first_error: None,
            sent: 0,
            elapsed: Duration::ZERO,
        };
        while let Some(done) = workers.join_next().await {
            let w = done?;
            report.latencies.extend(w.latencies);
            report.ok += w.ok;
            report.errors += w.errors;
            report.sent += w.sent;
            report.first_error = report.first_error.or(w.first_error);
        }
        report.elapsed = started.elapsed();
        Ok(report)
    })
}

#[derive(Default)]
struct Worker {
    latencies: Vec<Duration>,
    ok: usize,
    errors: usize,
    sent: usize,
    first_error: Option<String>,
}

impl Worker {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

/// Intake's answer for a newly stored event.
pub fn stored_new(response: &Response) -> bool {
    response.status == 200 && find(&response.body, b"\"duplicate\":false").is_some()
}
