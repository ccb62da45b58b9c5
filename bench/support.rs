//! What every phase shares: child processes that are stopped when their guard drops (the real
//! server binary, Postfix's `smtp-sink`), readiness polling of `/healthz`, the server's memory
//! from `/proc`, and markdown tables.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What a phase needs to know about the run.
pub struct Bench {
    /// The `mailmycustomer` binary under test.
    pub bin: PathBuf,
    /// A few hundred events and 10k log rows; correctness only.
    pub smoke: bool,
    /// Where temporary databases go: a real disk, since fsync is what intake pays for.
    pub tmp: PathBuf,
    /// Distinguishes this run's event ids from any other run's.
    pub run_id: String,
}

impl Bench {
    pub fn tempdir(&self, what: &str) -> anyhow::Result<tempfile::TempDir> {
        // MMC_BENCH_KEEP=1 keeps the databases and logs for a closer look (e.g. to profile).
        let keep = std::env::var_os("MMC_BENCH_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix(&format!("mmc-bench-{what}-"))
            .disable_cleanup(keep)
            .tempdir_in(&self.tmp)
            .with_context(|| format!("creating a temporary directory in {}", self.tmp.display()))?;
        // smtp-sink drops to `nobody` when started as root and must reach its dump folder.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        if keep {
            eprintln!("bench: keeping {}", dir.path().display());
        }
        Ok(dir)
    }
}

/// The checkout: the current directory when it is one (`bench/run.sh` runs from there), else the
/// one this harness was compiled in. A build reused from another clone that shared the target
/// directory would otherwise look for fixtures in a folder that may be gone.
pub fn repo_root() -> PathBuf {
    let fixture = "tests/fixtures/stripe/events/invoice.paid.json";
    std::env::current_dir()
        .ok()
        .filter(|d| d.join(fixture).exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A child process stopped on drop (SIGTERM, then SIGKILL after a grace period), so an early
/// return or an error never leaves a server or a sink behind. Only this process's own children
/// are ever signalled, by pid.
pub struct Guard {
    child: Option<Child>,
    name: String,
    /// The polite signal: TERM, or INT for perf, which writes its results on SIGINT.
    signal: &'static str,
}

impl Guard {
    pub fn new(child: Child, name: impl Into<String>) -> Guard {
        Guard {
            child: Some(child),
            name: name.into(),
            signal: "-TERM",
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process ended; its exit status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The polite signal (SIGTERM), wait up to `grace`, then SIGKILL. Returns how long the
    /// process took to exit.
    pub fn stop(&mut self, grace: Duration) -> Duration {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args([self.signal, &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            while started.elapsed() < grace {
                if !matches!(child.try_wait(), Ok(None)) {
                    return started.elapsed();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            eprintln!(
                "bench: {} did not stop within {grace:?}; killing it",
                self.name
            );
            let _ = child.kill();
        }
        let _ = child.wait();
        started.elapsed()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub fn postfix_tool(name: &str) -> anyhow::Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{name} is not installed: it comes with Debian's postfix package \
                 (apt-get install postfix; tests/run installs it)"
            )
        })
}

/// `mailmycustomer integration add` through the real CLI; returns the new `int_…` id.
pub fn add_integration(bin: &Path, db: &Path, secret: &str) -> anyhow::Result<String> {
    let out = base_command(bin, db)
        .args([
            "integration",
            "add",
            "--name",
            "bench",
            "--webhook-secret",
            secret,
        ])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "integration add failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("id: "))
        .map(|id| id.trim().to_owned())
        .with_context(|| format!("integration add printed no `id: …` line: {text}"))
}

/// The binary with only the settings given here: nothing from the caller's `MMC_*`
/// environment leaks into a measurement.
fn base_command(bin: &Path, db: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MMC_DATABASE__PATH", db)
        .env("MMC_LOG__LEVEL", "warn")
        .stdin(Stdio::null());
    // glibc allocator tuning (e.g. MALLOC_ARENA_MAX=2) passes through, for memory experiments.
    for (name, value) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MALLOC_") {
            command.env(name, value);
        }
    }
    // `MMC_BENCH_SMTP_POOL_SIZE`: the sender's connections (`smtp.pool_size`), to tune it.
    if let Some(size) = std::env::var_os("MMC_BENCH_SMTP_POOL_SIZE") {
        command.env("MMC_SMTP__POOL_SIZE", size);
    }
    command
}

pub struct Server {
    pub guard: Guard,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `mailmycustomer serve` on `db` and a free loopback port, sending to the SMTP sink
    /// on `smtp_port` if given, and waits for `/healthz` to answer 200. Returns the server and
    /// the time from exec to that first 200.
    pub fn start(
        bin: &Path,
        db: &Path,
        smtp_port: Option<u16>,
        log: &Path,
    ) -> anyhow::Result<(Server, Duration)> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut command = base_command(bin, db);
        command
            .arg("serve")
            .env("MMC_SERVER__LISTEN", addr.to_string())
            .env("MMC_SERVER__SHUTDOWN_TIMEOUT_SECS", "5")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?);
        if let Some(port) = smtp_port {
            command
                .env("MMC_SMTP__HOST", "127.0.0.1")
                .env("MMC_SMTP__PORT", port.to_string())
                .env("MMC_SMTP__SECURITY", "none")
                .env("MMC_SMTP__FROM_ADDRESS", "billing@bench.example");
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let mut server = Server {
            guard: Guard::new(child, "the server"),
            addr,
            log: log.to_owned(),
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            if healthz(addr) == Some(200) {
                return Ok((server, started.elapsed()));
            }
            if let Some(status) = server.guard.exited() {
                bail!("the server exited with {status}: {}", server.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not answer /healthz within 60 s: {}",
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Warnings and errors the server logged (it runs at level warn).
    pub fn logged_errors(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}

/// One `GET /healthz` on a new connection; the status code, or None if nothing answered.
pub fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `VmRSS` or `VmHWM` (peak) of a process, in KiB; or another numeric field such as `Threads`.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Postfix `smtp-sink` on a loopback port, counting messages (`-c`), and with `dump` keeping
/// each one as a file.
pub struct Sink {
    pub guard: Guard,
    pub port: u16,
    counters: PathBuf,
    pub dump: Option<PathBuf>,
}

impl Sink {
    pub fn start(dir: &Path, dump: bool) -> anyhow::Result<Sink> {
        let port = free_port()?;
        let counters = dir.join(format!("sink-{port}.counters"));
        let mut command = Command::new(postfix_tool("smtp-sink")?);
        command.arg("-c");
        if is_root() {
            command.args(["-u", "nobody"]);
        }
        let dump = if dump {
            let folder = dir.join(format!("sink-{port}"));
            std::fs::create_dir(&folder)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777))?;
            command.arg("-d").arg(format!("{}/", folder.display()));
            Some(folder)
        } else {
            None
        };
        let child = command
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&counters)?)
            .stderr(std::fs::File::create(
                dir.join(format!("sink-{port}.stderr")),
            )?)
            .spawn()
            .context("starting smtp-sink")?;
        let mut sink = Sink {
            guard: Guard::new(child, "smtp-sink"),
            port,
            counters,
            dump,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = sink.guard.exited() {
                bail!("smtp-sink exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("smtp-sink did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(sink)
    }

    /// Messages received so far: the last `mesg=N` counter smtp-sink printed. Reads only the
    /// file's tail, so polling it stays cheap however many messages came.
    pub fn count(&self) -> u64 {
        let Ok(mut file) = std::fs::File::open(&self.counters) else {
            return 0;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(256)));
        let mut tail = String::new();
        let _ = file.read_to_string(&mut tail);
        tail.rfind("mesg=")
            .map(|at| {
                tail[at + 5..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `n` messages arrived or `within` passed; returns when the n-th was counted.
    pub fn wait_for(&self, n: u64, since: Instant, within: Duration) -> Option<Duration> {
        loop {
            if self.count() >= n {
                return Some(since.elapsed());
            }
            if since.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The dumped messages (with `dump`).
    pub fn files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dump else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }
}

/// A markdown table, columns padded so it also reads well in a terminal.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(&self.headers);
        let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", dashes.join("-|-"));
        for row in &self.rows {
            line(row);
        }
        println!();
    }
}

/// SplitMix64's finaliser: consecutive inputs give outputs in no order, and the same ones on every
/// build, so generated histories and id orders repeat run after run.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64's step between seeds.
pub const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MB", k as f64 / 1024.0),
    )
}

pub fn rate(n: f64) -> String {
    format!("{n:.0}/s")
}

/// Median of durations (sorts in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Counts rows with one query on a fresh read-only connection (the server may be running).
pub fn count(db: &Path, sql: &str) -> anyhow::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

/// With `MMC_BENCH_PERF_DIR` set, profiles process `pid` until the returned guards drop, or for
/// at most `window`: `perf record` (CPU samples with DWARF call graphs) into
/// `{dir}/{name}.perf.data`, and `perf stat` counting per thread the fsyncs (commits and
/// checkpoints), SQLite busy-handler sleeps (clock_nanosleep: nothing else in the server sleeps
/// that way) and futex calls (lock hand-offs and wake-ups) into `{dir}/{name}.syscalls.txt`.
/// Without the variable, does nothing. For symbols, build the server as `bench/profile.sh`
/// does.
pub fn profile(pid: u32, name: &str, window: Option<Duration>) -> Vec<Guard> {
    let Some(dir) = std::env::var_os("MMC_BENCH_PERF_DIR") else {
        return Vec::new();
    };
    let dir = Path::new(&dir);
    let pid = pid.to_string();
    let record = [
        "record",
        "-q",
        "-F",
        "299",
        "--call-graph",
        "dwarf,16384",
        "-p",
        &pid,
        "-o",
    ];
    let stat = [
        "stat", "--per-thread", "-e",
        "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_clock_nanosleep,syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64",
        "-p", &pid, "-o",
    ];
    // MMC_BENCH_PERF_STAT_ONLY=1: only the (cheap) system call counts, no CPU samples.
    let stat_only = std::env::var_os("MMC_BENCH_PERF_STAT_ONLY").is_some();
    let mut guards = Vec::new();
    for (args, file) in [
        (&record[..], format!("{name}.perf.data")),
        (&stat[..], format!("{name}.syscalls.txt")),
    ] {
        if stat_only && args[0] == "record" {
            continue;
        }
        let mut command = Command::new("perf");
        command
            .args(args)
            .arg(dir.join(&file))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(window) = window {
            command.args(["--", "sleep", &window.as_secs_f64().to_string()]);
        }
        match command.spawn() {
            Ok(child) => {
                let mut guard = Guard::new(child, "perf");
                guard.signal = "-INT";
                guards.push(guard);
            }
            Err(e) => eprintln!("bench: cannot start perf: {e}"),
        }
    }
    // perf needs a moment to attach to every thread.
    std::thread::sleep(Duration::from_millis(300));
    eprintln!("bench: profiling {name} into {}", dir.display());
    guards
}

/// CPU time (user + system) a process has used so far: `/proc/PID/stat`, all its threads.
pub fn cpu_time(pid: &str) -> Duration {
    let ticks_per_sec = 100.0; // USER_HZ, 100 on every Linux architecture that matters here
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(ticks / ticks_per_sec)
}

/// CPU time the whole machine spent busy (not idle, not waiting for I/O): `/proc/stat`.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Duration::from_secs_f64(busy / 100.0)
}

/// CPU used over a window, in cores: by the server, by this harness (the load generator), and
/// by everything else on the machine (which should be near 0 for numbers worth keeping).
pub struct CpuWindow {
    server: String,
    started: Instant,
    server_cpu: Duration,
    own_cpu: Duration,
    machine: Duration,
    threads: std::collections::HashMap<String, (String, Duration)>,
}

pub struct Cores {
    pub server: f64,
    pub generator: f64,
    pub others: f64,
    /// The server's threads that were busiest, by name: (name, threads, cores).
    pub busiest: Vec<(String, usize, f64)>,
}

impl Cores {
    /// `event-writer 0.45, tokio-runtime-w ×6 0.52`.
    pub fn busiest(&self) -> String {
        self.busiest
            .iter()
            .filter(|(_, _, cores)| *cores >= 0.01)
            .map(|(name, n, cores)| match n {
                1 => format!("{name} {cores:.2}"),
                _ => format!("{name} ×{n} {cores:.2}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Each thread of a process: tid → (name, CPU time so far).
fn threads(pid: &str) -> std::collections::HashMap<String, (String, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    tasks
        .filter_map(|t| t.ok())
        .map(|t| {
            let tid = t.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let cpu = cpu_time(&format!("{pid}/task/{tid}"));
            (tid, (name.trim().to_owned(), cpu))
        })
        .collect()
}

impl std::fmt::Display for Cores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} + {:.2} + {:.2}",
            self.server, self.generator, self.others
        )
    }
}

impl CpuWindow {
    pub fn start(server_pid: u32) -> CpuWindow {
        let server = server_pid.to_string();
        CpuWindow {
            server_cpu: cpu_time(&server),
            own_cpu: cpu_time("self"),
            machine: machine_busy(),
            threads: threads(&server),
            server,
            started: Instant::now(),
        }
    }

    /// Cores used on average since `start`.
    pub fn cores(&self) -> Cores {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let server = cpu_time(&self.server).saturating_sub(self.server_cpu);
        let own = cpu_time("self").saturating_sub(self.own_cpu);
        let machine = machine_busy().saturating_sub(self.machine);
        let mut by_name: std::collections::HashMap<String, (usize, Duration)> = Default::default();
        for (tid, (name, cpu)) in threads(&self.server) {
            let before = self.threads.get(&tid).map_or(Duration::ZERO, |t| t.1);
            let entry = by_name.entry(name).or_default();
            entry.0 += 1;
            entry.1 += cpu.saturating_sub(before);
        }
        let mut busiest: Vec<(String, usize, f64)> = by_name
            .into_iter()
            .map(|(name, (n, cpu))| (name, n, cpu.as_secs_f64() / wall))
            .collect();
        busiest.sort_by(|a, b| b.2.total_cmp(&a.2));
        Cores {
            server: server.as_secs_f64() / wall,
            generator: own.as_secs_f64() / wall,
            others: machine.saturating_sub(server + own).as_secs_f64() / wall,
            busiest,
        }
    }
}
