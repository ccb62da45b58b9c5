//! A real Postfix `smtp-sink` on a loopback port, keeping each message as a file; killed on drop.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_with(free_port(), &[])
    }

    pub fn start_on(port: u16) -> Sink {
        Sink::start_with(port, &[])
    }

    /// With extra smtp-sink options, e.g. `["-f", "RCPT"]` to answer RCPT with a 5xx.
    pub fn start_with(port: u16, options: &[&str]) -> Sink {
        let bin = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("smtp-sink is not installed (Debian's postfix package): run tests/run, which installs it")
            });
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).unwrap();
        // smtp-sink drops to `nobody` when started as root; that user writes the files.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut command = Command::new(bin);
        // -c prints "sess=N quit=N mesg=N" counters: how many connections and messages came.
        command.arg("-c");
        if is_root() {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .args(options)
            .arg("-d")
            .arg(format!("{}/", mail.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(std::fs::File::create(dir.path().join("counters")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("start smtp-sink");
        let mut sink = Sink { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sink.child.try_wait() {
                panic!(
                    "smtp-sink exited with {status}: {}",
                    std::fs::read_to_string(sink.dir.path().join("stderr")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    /// Every message received completely so far, raw.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let read = |files: &[std::path::PathBuf]| -> Vec<Option<Vec<u8>>> {
            files.iter().map(|p| std::fs::read(p).ok()).collect()
        };
        // smtp-sink creates a message's file at MAIL FROM and writes it through a buffer, so a
        // file can be empty or cut short while its transaction runs. A finished one ends with the
        // blank line smtp-sink appends at the end of DATA and no longer grows.
        let first = read(&files);
        std::thread::sleep(Duration::from_millis(20));
        let second = read(&files);
        first
            .into_iter()
            .zip(second)
            .filter_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if a == b && a.ends_with(b"\n\n") => Some(a),
                _ => None,
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived (panics after `within`), then returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages arrived within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the last "sess=N quit=N mesg=N" line smtp-sink printed is `expected`.
    pub fn wait_counters(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("counters")).unwrap_or_default();
            let last = text
                .split(['\r', '\n'])
                .rfind(|l| !l.is_empty())
                .unwrap_or("");
            if last == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink counters are {last:?}, expected {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
