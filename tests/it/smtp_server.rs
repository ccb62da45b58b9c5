//! A scripted SMTP server for fault-injection tests: it answers each command with a reply the test
//! queued for it (or a plain 2xx), can drop or stall the connection at a chosen command, and
//! records the connections, command lines and messages it received. With a `TlsTerminator`
//! (the `openssl s_server` CLI relaying the decrypted bytes through its stdin and stdout) it
//! also speaks STARTTLS and implicit TLS.

use crate::sink::free_port;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server does when a command comes in, instead of its default reply.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Send this reply (lines separated by "\r\n" for a multi-line reply).
    Text(String),
    /// Close the connection without replying.
    Close,
    /// Never reply; keep the connection open.
    Hang,
}

/// What the server received.
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub connections: usize,
    /// Command lines without their CRLF, in arrival order over all connections.
    pub commands: Vec<String>,
    /// Message contents as sent after DATA, dot-stuffing undone, CRLF kept.
    pub messages: Vec<Vec<u8>>,
    /// Command lines that arrived with further commands already behind them in the same read:
    /// what a client pipelining its envelope (RFC 2920) produces.
    pub pipelined: Vec<String>,
}

impl Log {
    /// The commands whose first word is `verb`.
    pub fn verbs(&self, verb: &str) -> Vec<&str> {
        self.commands
            .iter()
            .filter(|c| {
                c.split_whitespace()
                    .next()
                    .is_some_and(|v| v.eq_ignore_ascii_case(verb))
            })
            .map(String::as_str)
            .collect()
    }
}

#[derive(Default)]
struct State {
    /// EHLO keywords after the greeting line, e.g. "STARTTLS" or "AUTH PLAIN".
    extensions: Vec<String>,
    /// Replies queued per command verb ("CONNECT" for the greeting, "." for the end of DATA);
    /// each is used once, then the default applies again.
    replies: HashMap<String, VecDeque<Reply>>,
    log: Log,
    /// Where STARTTLS hands the connection over to.
    starttls: Option<TlsTerminator>,
}

#[derive(Clone)]
pub struct ScriptedServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ScriptedServer {
    /// Starts a server on 127.0.0.1 at a free port that advertises `extensions` after EHLO.
    pub async fn start(extensions: &[&str]) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = ScriptedServer {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                extensions: extensions.iter().map(|e| e.to_string()).collect(),
                ..State::default()
            })),
        };
        let state = server.state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, state.clone()));
            }
        });
        server
    }

    /// A server whose only session runs over `terminator`'s decrypted stream: the client
    /// connects to `terminator.port` and speaks TLS from the first byte.
    pub async fn behind_tls(terminator: &mut TlsTerminator) -> ScriptedServer {
        let server = ScriptedServer {
            addr: SocketAddr::from(([127, 0, 0, 1], terminator.port)),
            state: Arc::new(Mutex::new(State::default())),
        };
        tokio::spawn(session(terminator.take_stdio(), server.state.clone()));
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues `reply` for the next `verb` command (after earlier queued ones).
    pub fn reply(&self, verb: &str, reply: Reply) -> &Self {
        self.state
            .lock()
            .unwrap()
            .replies
            .entry(verb.to_ascii_uppercase())
            .or_default()
            .push_back(reply);
        self
    }

    /// Queues a text reply for the next `verb` command.
    pub fn reply_text(&self, verb: &str, text: &str) -> &Self {
        self.reply(verb, Reply::Text(text.to_owned()))
    }

    /// After a 220 to STARTTLS, the connection continues through `terminator`.
    pub fn starttls_through(&self, terminator: TlsTerminator) {
        self.state.lock().unwrap().starttls = Some(terminator);
    }

    pub fn log(&self) -> Log {
        self.state.lock().unwrap().log.clone()
    }
}

fn next_reply(state: &Mutex<State>, verb: &str) -> Option<Reply> {
    state
        .lock()
        .unwrap()
        .replies
        .get_mut(verb)
        .and_then(VecDeque::pop_front)
}

/// Sends the queued reply for `verb` or `default`; returns the reply sent, None when the
/// connection is to end.
async fn answer(
    io: &mut BufReader<TcpStream>,
    state: &Mutex<State>,
    verb: &str,
    default: String,
) -> Option<String> {
    let text = match next_reply(state, verb) {
        None => default,
        Some(Reply::Text(text)) => text,
        Some(Reply::Close) => return None,
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return None;
        }
    };
    let wire = format!("{}\r\n", text.trim_end());
    io.get_mut().write_all(wire.as_bytes()).await.ok()?;
    Some(text)
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    state.lock().unwrap().log.connections += 1;
    let mut io = BufReader::new(stream);
    if answer(&mut io, &state, "CONNECT", "220 scripted ESMTP".into())
        .await
        .is_none()
    {
        return;
    }
    let mut queued = 0;
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        {
            let mut state = state.lock().unwrap();
            if !io.buffer().is_empty() {
                state.log.pipelined.push(line.clone());
            }
            state.log.commands.push(line.clone());
        }
        let default = match verb.as_str() {
            "EHLO" => {
                let extensions = state.lock().unwrap().extensions.clone();
                let mut lines = vec!["scripted".to_owned()];
                lines.extend(extensions);
                let last = lines.len() - 1;
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" => "250 2.0.0 OK".into(),
            "DATA" => "354 End data with <CR><LF>.<CR><LF>".into(),
            "AUTH" => "235 2.7.0 Authentication successful".into(),
            "STARTTLS" => "220 2.0.0 Ready to start TLS".into(),
            "QUIT" => "221 2.0.0 Bye".into(),
            _ => "502 5.5.2 Error: command not recognized".into(),
        };
        let Some(sent) = answer(&mut io, &state, &verb, default).await else {
            return;
        };
        match verb.as_str() {
            "QUIT" => return,
            "DATA" if sent.starts_with("354") => {
                let Some(message) = read_message(&mut io).await else {
                    return;
                };
                state.lock().unwrap().log.messages.push(message);
                queued += 1;
                let done = format!("250 2.0.0 Ok: queued as {queued}");
                if answer(&mut io, &state, ".", done).await.is_none() {
                    return;
                }
            }
            "STARTTLS" if sent.starts_with("220") => {
                let terminator = state.lock().unwrap().starttls.take();
                let Some(mut terminator) = terminator else {
                    continue;
                };
                let decrypted = terminator.take_stdio();
                let mut client = io.into_inner();
                let mut tls = TcpStream::connect(("127.0.0.1", terminator.port))
                    .await
                    .unwrap();
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut tls).await;
                    drop(terminator);
                });
                io = BufReader::new(decrypted);
            }
            _ => {}
        }
    }
}

/// Reads DATA up to the lone dot and undoes dot-stuffing.
async fn read_message(io: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" {
            return Some(message);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(unstuffed);
    }
}

/// `openssl s_server` for one TLS connection on a free loopback port, its decrypted stream
/// relayed through its stdin and stdout to a loopback socket pair.
pub struct TlsTerminator {
    pub port: u16,
    child: Child,
    stdio: Option<std::net::TcpStream>,
}

impl TlsTerminator {
    pub fn start(cert: &Path, key: &Path) -> TlsTerminator {
        let port = free_port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-naccept", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the openssl CLI is needed for the TLS tests: run tests/run, or apt-get install openssl");
        wait_listening(port, &mut child);

        let pair = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(pair.local_addr().unwrap()).unwrap();
        let (theirs, _) = pair.accept().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut to_test = ours.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut to_test);
            let _ = to_test.shutdown(std::net::Shutdown::Write);
        });
        let mut stdin = child.stdin.take().unwrap();
        let mut from_test = ours;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from_test.read(&mut buf) {
                if n == 0 || stdin.write_all(&buf[..n]).is_err() || stdin.flush().is_err() {
                    break;
                }
            }
        });
        TlsTerminator {
            port,
            child,
            stdio: Some(theirs),
        }
    }

    /// The decrypted side of the connection, for the SMTP session.
    fn take_stdio(&mut self) -> TcpStream {
        let stdio = self.stdio.take().expect("stdio taken once");
        stdio.set_nonblocking(true).unwrap();
        TcpStream::from_std(stdio).unwrap()
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a socket listens on 127.0.0.1:`port`, read from /proc/net/tcp: connecting to
/// find out would use up the one connection `s_server -naccept 1` takes.
fn wait_listening(port: u16, child: &mut Child) {
    let needle = format!("0100007F:{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == needle && f[3] == "0A"
        });
        if listening {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("openssl s_server exited with {status} before listening on port {port}");
        }
        assert!(
            Instant::now() < deadline,
            "openssl s_server did not listen on port {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
