//! The release binary against clients that try to knock it over (issue 9): idle and slow
//! connections are cut off, bodies nobody will store are refused unread, running out of file
//! descriptors neither spins nor wedges the server, and request values cannot forge log lines.
//! Timeouts are set to a second or two so each test ends quickly; every flood is bounded in
//! count and time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{add_integration_cli, mmc_with};
use crate::support::*;

/// How long any one read in these tests waits before the test fails: far above every timeout
/// the servers here are given, so only a server that never acts reaches it.
const PATIENCE: Duration = Duration::from_secs(15);

/// The release binary serving on a fresh database with one integration, its log kept.
struct Served {
    child: Child,
    addr: String,
    integration: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts `serve` with `env` (JSON logs unless `env` says otherwise).
    fn start(env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let (integration, _) =
            add_integration_cli(dir.path(), &["--name", "shop", "--webhook-secret", SECRET]);
        let mut child = mmc_with(
            &release_binary(),
            dir.path(),
            &["serve", "--listen", "127.0.0.1:0"],
        )
        .env("MMC_LOG__FORMAT", "json")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("serve exited early: {seen:#?}");
            };
            seen.push(line.clone());
            if line.contains("is serving") {
                break listen_address(&line);
            }
        };
        let log = Arc::new(Mutex::new(seen));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Served {
            child,
            addr,
            integration,
            log,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Stops the server with SIGTERM and waits for it, so the whole log has been written.
    fn stop(mut self) -> Vec<String> {
        assert!(signal(self.pid(), "-TERM"), "SIGTERM to the server");
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < PATIENCE, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The log thread ends at the pipe's end, shortly after the process.
        std::thread::sleep(Duration::from_millis(200));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (as kill(1) names it, "-TERM") to `pid`; whether it was delivered.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// The address in the "is serving" line, JSON or text.
fn listen_address(line: &str) -> String {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"]["listen"].as_str().unwrap().to_owned();
    }
    let start = line.find("listen=").expect("listen= in the text log") + "listen=".len();
    line[start..].split_whitespace().next().unwrap().to_owned()
}

/// Reads until the server closes the connection; what it sent first, and whether it closed (a
/// reset counts: the server is gone either way). Fails the test if the server keeps it open.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server kept the connection open ({e}); it sent: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// An HTTP/1.1 response's status line and headers, read off a kept-alive connection.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-response");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Sends `bytes` one every 200 ms while reading what the server answers, until the server
/// closes the connection; how many bytes went out, and the answer. Fails the test if the server
/// is still listening after `PATIENCE`.
fn trickle(mut stream: TcpStream, bytes: &[u8]) -> (usize, String) {
    let mut reading = stream.try_clone().unwrap();
    let reader = std::thread::spawn(move || read_until_closed(&mut reading));
    let started = Instant::now();
    let mut sent = 0;
    for byte in bytes {
        if reader.is_finished() || stream.write_all(&[*byte]).is_err() {
            break;
        }
        if started.elapsed() > PATIENCE {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            panic!("after {sent} bytes in {PATIENCE:?}, the server still waits for more");
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    (sent, reader.join().unwrap())
}

const SHORT_TIMEOUTS: &[(&str, &str)] = &[
    ("MMC_SERVER__HEADER_TIMEOUT_SECS", "1"),
    ("MMC_SERVER__BODY_TIMEOUT_SECS", "1"),
    ("MMC_SERVER__IDLE_TIMEOUT_SECS", "1"),
];

/// A connection that opens and says nothing, and one kept alive after a response, are both
/// closed by the server (header and idle timeouts), not held forever.
#[test]
fn silent_and_idle_connections_are_closed() {
    let server = Served::start(SHORT_TIMEOUTS);

    let mut silent = server.connect();
    assert_eq!(
        read_until_closed(&mut silent),
        "",
        "closed without an answer"
    );

    let mut kept = server.connect();
    write!(
        kept,
        "GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    )
    .unwrap();
    let head = read_head(&mut kept);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    // The rest is the small JSON body, then the close once the idle timeout passes.
    let rest = read_until_closed(&mut kept);
    assert!(rest.contains("schema_version"), "{rest}");
}

/// Headers sent one byte at a time are cut off by the header deadline, however steady the
/// trickle: the server closes before the client is through.
#[test]
fn slow_headers_are_cut_off() {
    let server = Served::start(SHORT_TIMEOUTS);
    let stream = server.connect();
    let request = format!(
        "POST /webhooks/stripe/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        server.integration, server.addr
    );
    // One byte every 200 ms: the request would take over 30 s; the deadline is 1 s.
    let (sent, answer) = trickle(stream, request.as_bytes());
    assert!(
        sent < request.len(),
        "the whole request went through: {answer}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// A body sent one byte at a time misses the whole-body deadline: 408, and nothing stored.
#[test]
fn a_slow_body_is_answered_408() {
    let server = Served::start(SHORT_TIMEOUTS);
    let body = fixture("invoice.paid.json");
    let mut stream = server.connect();
    write!(
        stream,
        "POST /webhooks/stripe/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        server.integration,
        server.addr,
        sign_now(&body, SECRET),
        body.len()
    )
    .unwrap();
    let (sent, answer) = trickle(stream, &body);
    assert!(sent < body.len(), "the whole body went through: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    let log = server.stop();
    assert!(
        !log.iter().any(|l| l.contains("webhook stored")),
        "{log:#?}"
    );
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The machine's TCP counters that tell how a connection can be reset or lost without the
/// server's doing (listen queue overflows, SYN cookies, aborts, loopback drops), by name.
fn tcp_counters() -> std::collections::BTreeMap<String, u64> {
    const WATCHED: [&str; 12] = [
        "ListenOverflows",
        "ListenDrops",
        "SyncookiesSent",
        "SyncookiesFailed",
        "TCPReqQFullDrop",
        "TCPAbortOnData",
        "TCPAbortOnClose",
        "TCPAbortOnMemory",
        "EmbryonicRsts",
        "OutRsts",
        "RetransSegs",
        "TCPTimeouts",
    ];
    let mut counters = std::collections::BTreeMap::new();
    for file in ["/proc/net/netstat", "/proc/net/snmp"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        // Each group is a line of names and a line of values, both led by the group's name.
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if WATCHED.contains(&name) {
                    counters.insert(name.to_owned(), value.parse().unwrap_or(0));
                }
            }
        }
    }
    // The second column of each CPU's line: packets dropped from a full backlog (loopback's too).
    let softnet = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    let dropped = softnet
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum();
    counters.insert("softnet dropped".to_owned(), dropped);
    counters
}

/// The counters of `tcp_counters` that moved since `before`, by how much.
fn tcp_counters_changed(
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    tcp_counters()
        .into_iter()
        .filter_map(|(name, now)| {
            let moved = now.saturating_sub(*before.get(&name).unwrap_or(&0));
            (moved > 0).then_some((name, moved))
        })
        .collect()
}

/// Seconds of CPU the process has used (user + system), from /proc/PID/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces; utime and
    // stime are fields 14 and 15 of the whole line.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_sec = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_sec: f64 = String::from_utf8(per_sec.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ticks as f64 / per_sec
}

/// 300 connections each declaring a 512 KiB body to a made-up integration, sending 1 KiB of
/// it and stopping: every one is answered 404 at once, without the server waiting for (or
/// holding) the rest. Then 300 clients pushing whole 512 KiB bodies at it: the server's memory
/// stays far below the 150 MB it would take to read them.
#[tokio::test(flavor = "multi_thread")]
async fn unfinished_bodies_to_an_unknown_id_are_refused_unread() {
    let mut server = Served::start(&[
        ("MMC_SERVER__BODY_TIMEOUT_SECS", "60"),
        // So a connection closed on a deadline or in an error says so in the log shown below.
        ("MMC_LOG__LEVEL", "info,mailmycustomer::web::listener=debug"),
    ]);
    let pid = server.pid();
    let before = vm_kib(pid, "VmRSS:");
    let declared = 512 * 1024;
    let head = format!(
        "POST /webhooks/stripe/int_madeup HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n",
        server.addr
    );

    let counters = tcp_counters();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..300 {
        let (addr, head) = (server.addr.clone(), head.clone());
        clients.push(tokio::spawn(async move {
            let client = async {
                let mut stream = tokio::net::TcpStream::connect(&addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                stream
                    .write_all(head.as_bytes())
                    .await
                    .map_err(|e| format!("writing the head: {e}"))?;
                stream
                    .write_all(&[b'x'; 1024])
                    .await
                    .map_err(|e| format!("writing 1 KiB of the body: {e}"))?;
                let mut answer = Vec::new();
                match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await {
                    Ok(Ok(_)) => Ok(String::from_utf8_lossy(&answer).into_owned()),
                    Ok(Err(e)) => Err(format!(
                        "reading the answer: {e}, after {:?}",
                        String::from_utf8_lossy(&answer)
                    )),
                    Err(_) => Err(format!(
                        "no answer and no close in {PATIENCE:?} while the body is unfinished"
                    )),
                }
            };
            // When it failed tells a deadline (10 s) from a reset at once.
            client
                .await
                .map_err(|e| format!("{e} ({:?} into the flood)", started.elapsed()))
        }));
    }
    let mut failed = Vec::new();
    for client in clients {
        match client.await.unwrap() {
            Ok(answer) if answer.starts_with("HTTP/1.1 404") => {
                assert!(answer.contains("unknown_integration"), "{answer}");
            }
            Ok(answer) => failed.push(format!("answered {answer:?}")),
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        let counters = tcp_counters_changed(&counters);
        let running = server.child.try_wait().unwrap().is_none();
        // The whole log, written out by a clean stop: everything but the expected refusals.
        let log = if running {
            server.stop()
        } else {
            server.log_text().lines().map(str::to_owned).collect()
        };
        let refused = log.iter().filter(|l| l.contains("webhook refused")).count();
        let log: Vec<&String> = log
            .iter()
            .filter(|l| !l.contains("webhook refused"))
            .collect();
        panic!(
            "{} of 300 clients failed, first: {:#?}\nthe server was {}, and logged {refused} refusals\n\
             the machine's TCP counters that moved meanwhile (other tests' too): {counters:?}\n\
             server log: {log:#?}",
            failed.len(),
            &failed[..failed.len().min(5)],
            if running { "still running" } else { "gone" },
        );
    }

    // Whole bodies, pushed as fast as the server takes them. Only the server's memory is
    // checked here; that such a client reads its answer is
    // `a_client_still_sending_a_refused_body_reads_the_refusal`.
    let body = Arc::new(vec![b'x'; declared - 1]);
    let mut pushers = Vec::new();
    for _ in 0..300 {
        let (addr, head, body) = (server.addr.clone(), head.clone(), body.clone());
        pushers.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let push = async {
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&body).await
            };
            let _ = tokio::time::timeout(PATIENCE, push).await;
            stream
        }));
    }
    let mut streams = Vec::new();
    for pusher in pushers {
        streams.push(pusher.await.unwrap());
    }
    let (rss, peak) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmHWM:"));
    eprintln!(
        "figures: server VmRSS before {before} KiB, after the floods {rss} KiB, peak (VmHWM) {peak} KiB"
    );
    drop(streams);
    assert!(
        peak < 100 * 1024,
        "the server held {peak} KiB at its peak: bodies were read"
    );
}

/// A burst of connections while the server cannot accept (stopped with SIGSTOP, as a busy
/// server looks to the kernel) waits in the listen queue and is served once it can. Past the
/// queue's end, Linux drops handshakes and then answers them with SYN cookies, which reset a
/// client that sends before it is accepted; the server asks for a queue of 1024, where the
/// standard 128 would leave the 130th connection here unanswered.
#[test]
fn a_burst_while_the_server_cannot_accept_waits_in_the_listen_queue() {
    /// SIGCONT on the way out, so a failing test leaves no stopped server behind.
    struct Stopped(u32);
    impl Drop for Stopped {
        fn drop(&mut self) {
            signal(self.0, "-CONT");
        }
    }

    let server = Served::start(&[]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    assert!(signal(server.pid(), "-STOP"), "SIGSTOP to the server");
    let stopped = Stopped(server.pid());
    // A queued handshake completes in the kernel at once; one past the queue's end is dropped
    // and retried after 1 s, 3 s, ..., so it would not complete while the server is stopped.
    let mut streams: Vec<TcpStream> = (1..=300)
        .map(|n| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| {
                // The kernel caps every listen queue at somaxconn, whatever the server asks.
                let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn");
                panic!(
                    "connection {n} of 300 was not queued while the server was stopped: {e} \
                     (net.core.somaxconn: {})",
                    somaxconn.as_deref().map_or("unknown", str::trim)
                )
            })
        })
        .collect();
    drop(stopped);
    for stream in &mut streams {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        )
        .unwrap();
    }
    for (n, stream) in streams.iter_mut().enumerate() {
        let answer = read_until_closed(stream);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "connection {} of 300, queued while the server was stopped, got {answer:?}",
            n + 1
        );
    }
}

/// A client still sending a body the server refused before reading it (to an unknown id; over
/// the size limit; after a malformed header) gets to send it and then reads the refusal, rather
/// than failing on its write when the server closes: the server lingers on the connection,
/// dropping what arrives.
#[test]
fn a_client_still_sending_a_refused_body_reads_the_refusal() {
    let server = Served::start(&[]);
    let body = vec![b'x'; 900 * 1024];
    let cases = [
        ("/webhooks/stripe/int_madeup".to_owned(), "", "HTTP/1.1 404"),
        (
            format!("/webhooks/stripe/{}", server.integration),
            "",
            "HTTP/1.1 413",
        ),
        // A header line without a colon: hyper answers 400 and ends the connection in an error.
        (
            format!("/webhooks/stripe/{}", server.integration),
            "Stripe-Signature\r\n",
            "HTTP/1.1 400",
        ),
    ];
    for (path, malformed, status) in cases {
        let mut stream = server.connect();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{malformed}Content-Length: {}\r\n\r\n",
            server.addr,
            body.len()
        )
        .unwrap();
        // Time for the server to answer and close before the body goes out, as it would for a
        // client on a slow link: the body then arrives at a connection already answered.
        std::thread::sleep(Duration::from_millis(100));
        stream
            .write_all(&body)
            .unwrap_or_else(|e| panic!("{path}, {status}: writing the body failed: {e}"));
        let answer = read_until_closed(&mut stream);
        assert!(answer.starts_with(status), "{path}, {status}: {answer}");
    }
}

/// With fewer file descriptors than connections, the server backs off instead of spinning on
/// failed accepts, and `/healthz` answers again once the flood ends.
#[test]
fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let server = Served::start(&[
        // Connections past the descriptor limit, so it is the limit that stops accepting.
        ("MMC_SERVER__MAX_CONNECTIONS", "1000"),
        // Long enough that the flood's connections stay open while the CPU is measured.
        ("MMC_SERVER__HEADER_TIMEOUT_SECS", "30"),
    ]);
    let pid = server.pid();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=128:128"])
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit failed");

    // More connections than descriptors, but fewer than descriptors and listen queue (128)
    // together, so every connect completes and the flood is all there while it is measured.
    let flood: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    // Let the server run into the limit, then measure what it spends there.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu_before, at) = (cpu_secs(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let cores = (cpu_secs(pid) - cpu_before) / at.elapsed().as_secs_f64();
    eprintln!("figures: server CPU while out of file descriptors: {cores:.3} cores");
    assert!(
        cores < 0.2,
        "the server used {cores:.2} cores while out of file descriptors"
    );
    let log = server.log_text();
    assert!(
        log.contains("cannot accept connections") && log.contains("Too many open files"),
        "the failed accepts were not reported: {log}"
    );

    drop(flood);
    let started = Instant::now();
    loop {
        let mut stream = server.connect();
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        )
        .unwrap();
        let answer = read_until_closed(&mut stream);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "/healthz does not answer after the flood: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "figures: /healthz answered {:?} after the flood ended",
        started.elapsed()
    );
    let log = server.stop();
    assert!(
        log.iter()
            .any(|l| l.contains("accepting connections again")),
        "{log:#?}"
    );
}

/// The shipped unit raises the open-file limit above the default connection cap, with room for
/// the server's own files.
#[test]
fn the_unit_allows_more_files_than_the_connection_cap() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mailmycustomer.service"),
    )
    .unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE in the unit")
        .parse()
        .unwrap();
    let cap = mailmycustomer::Config::default().server.max_connections as u64;
    assert!(
        limit >= cap + 256,
        "LimitNOFILE={limit} leaves no room above {cap} connections"
    );
}

/// An integration id crafted with a newline and a fake log line stays inside the refusal's
/// log line, quoted; a very long one is cut short in the log and in the answer.
#[test]
fn request_values_cannot_forge_log_lines() {
    let server = Served::start(&[("MMC_LOG__FORMAT", "text")]);
    let forged = "int_x%0A2026-12-01T00:00:00.000000Z%20%20INFO%20mailmycustomer:%20FORGED%20webhook%20stored";
    let long = "int_".to_owned() + &"a".repeat(5000);
    for id in [forged, long.as_str()] {
        let mut stream = server.connect();
        write!(
            stream,
            "POST /webhooks/stripe/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            server.addr
        )
        .unwrap();
        let answer = read_until_closed(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(
            answer.len() < 1000,
            "the answer echoes the whole id: {answer}"
        );
    }
    let log = server.stop();
    let refusals: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("webhook refused"))
        .collect();
    assert_eq!(refusals.len(), 2, "{log:#?}");
    for line in &log {
        assert!(
            !line.contains("FORGED") || line.contains("webhook refused"),
            "a forged line: {line:?}\n{log:#?}"
        );
        assert!(line.len() < 1000, "an unbounded line: {line}");
    }
    assert!(
        refusals[0].contains(r#"integration="int_x\n2026-12-01"#),
        "{}",
        refusals[0]
    );
}
