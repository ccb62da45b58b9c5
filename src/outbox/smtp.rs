//! SMTP transport: builds each email as an RFC 5322 message (mail-builder; DKIM-signed when
//! configured) and sends it over a connection this module opens itself.
//!
//! The `TcpStream` is opened here rather than by mail-send so that `TCP_NODELAY` is set before
//! the first SMTP command: mail-send's own connect path leaves Nagle's algorithm on, and every
//! command then waits for a delayed ACK (about 23 messages/s on loopback instead of thousands).
//! The TLS modes wrap that same no-delay stream.
//!
//! Failures are split into `Transient` (retry later) and `Permanent` (this message can never be
//! delivered as it is), and `SendError::hint` names the likely fix for `send-test-email`.

use std::sync::Arc;
use std::time::Duration;

use mail_send::mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_send::mail_auth::common::headers::HeaderWriter;
use mail_send::mail_auth::dkim::{DkimSigner, Done};
use mail_send::mail_builder::headers::address::Address;
use mail_send::mail_builder::headers::date::Date;
use mail_send::mail_builder::headers::Header;
use mail_send::mail_builder::MessageBuilder;
use mail_send::{Credentials, SmtpClient, SmtpClientBuilder};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{SmtpConfig, SmtpSecurity};

/// The subject of the message `send_test_email` sends.
pub const TEST_SUBJECT: &str = "MailMyCustomer test email";

/// The STARTTLS bit of an EHLO reply's capabilities: `smtp_proto::EXT_START_TLS` in smtp-proto
/// 0.2, which mail-send uses but does not re-export.
const EXT_START_TLS: u32 = 1 << 24;
/// The PIPELINING bit (RFC 2920), `smtp_proto::EXT_PIPELINING`, for the same reason.
const EXT_PIPELINING: u32 = 1 << 19;

/// Headers covered by the DKIM signature: those a receiver shows or that shape the body.
const DKIM_HEADERS: [&str; 8] = [
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
];

/// An email ready to go, built by the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingEmail<'a> {
    /// The outbox row. The Message-ID is derived from it, so a retry after a crash carries the
    /// same Message-ID and receivers can drop the duplicate.
    pub delivery_id: i64,
    pub created_at: i64,
    pub to: &'a str,
    pub to_name: Option<&'a str>,
    /// Per-integration override of `smtp.from_address`.
    pub from_address: Option<&'a str>,
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
}

/// A problem with the SMTP settings or with one message that stops it from being built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SmtpError {
    /// The settings cannot work; the text names the key and the fix.
    #[error("{0}")]
    Config(String),
    /// A recipient or sender that is not an email address; the text names which.
    #[error("{0}")]
    InvalidAddress(String),
    #[error("cannot build the message: {0}")]
    Build(String),
}

impl From<SmtpError> for SendError {
    fn from(err: SmtpError) -> Self {
        match err {
            // The message itself is wrong: sending it again gives the same result.
            SmtpError::InvalidAddress(message) => SendError::Permanent { message },
            other => SendError::Transient {
                message: other.to_string(),
            },
        }
    }
}

/// Why a send failed, and whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 4xx reply, connection refused/reset, timeout, TLS handshake I/O: try again later. Also
    /// every failure before MAIL FROM (greeting, STARTTLS, certificate, AUTH 535) and the 5xx
    /// replies about this machine's permission (530, relay denied): they are settings to fix,
    /// after which the same message goes through.
    #[error("{message}")]
    Transient { message: String },
    /// 5xx reply to MAIL FROM, RCPT TO, DATA or the message (e.g. 550 mailbox unavailable), an
    /// invalid recipient or sender address: do not retry.
    #[error("{message}")]
    Permanent { message: String },
}

impl SendError {
    fn transient(message: impl Into<String>) -> Self {
        SendError::Transient {
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        SendError::Permanent {
            message: message.into(),
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent { .. })
    }

    /// What went wrong, with the SMTP reply code and text when the server gave one.
    pub fn message(&self) -> &str {
        match self {
            SendError::Transient { message } | SendError::Permanent { message } => message,
        }
    }

    /// The likely fix, worded for the person running `send-test-email`; None when the message
    /// says it all.
    pub fn hint(&self, config: &SmtpConfig) -> Option<String> {
        let message = self.message();
        let lower = message.to_ascii_lowercase();
        let addr = host_port(&config.host, config.port);
        let code = reply_code(message);

        if lower.contains("connection refused") {
            return Some(format!(
                "nothing listens on {addr}: check smtp.host and smtp.port"
            ));
        }
        if message.starts_with(TLS_CERTIFICATE) {
            return Some(if lower.contains("not valid for name") {
                format!(
                    "the certificate does not match smtp.host = {:?}: set smtp.host to the name \
                     the relay's certificate is issued for",
                    config.host
                )
            } else {
                "the relay's certificate is not trusted by this machine (self-signed, expired or \
                 from an unknown authority): use the relay's public host name, or add its CA to \
                 the system trust store"
                    .to_owned()
            });
        }
        if message.starts_with(TLS_HANDSHAKE) && config.security == SmtpSecurity::Tls {
            return Some(if config.port == 587 {
                "port 587 usually wants security = \"starttls\"".to_owned()
            } else {
                format!(
                    "{addr} does not speak TLS from the first byte: try security = \"starttls\" \
                     (implicit TLS is usually port 465)"
                )
            });
        }
        if config.port == 465
            && config.security != SmtpSecurity::Tls
            && (message.starts_with(NO_GREETING) || message.starts_with(BAD_GREETING))
        {
            return Some("port 465 wants security = \"tls\"".to_owned());
        }
        if message.starts_with(NO_GREETING) && config.security != SmtpSecurity::Tls {
            return Some(
                "the server sent no greeting: if it expects TLS from the first byte, use \
                 security = \"tls\""
                    .to_owned(),
            );
        }
        if message.contains(NO_STARTTLS) {
            return Some(
                "the server does not offer STARTTLS: use security = \"none\" only for a local \
                 relay, or the port for TLS"
                    .to_owned(),
            );
        }
        if message.starts_with(AUTH_FAILED) || code == Some(535) {
            return Some("check smtp.username / smtp.password".to_owned());
        }
        if message.contains(NO_AUTH_MECHANISM) {
            return Some(if config.security == SmtpSecurity::None {
                "many relays offer AUTH only over TLS: use security = \"starttls\" or \"tls\""
                    .to_owned()
            } else {
                "the relay does not take a login here: leave smtp.username empty, or check \
                 smtp.port"
                    .to_owned()
            });
        }
        if matches!(code, Some(550 | 554)) && lower.contains("relay") {
            return Some(
                "the relay does not accept mail from this machine: set smtp.username/password"
                    .to_owned(),
            );
        }
        if code == Some(530) {
            return Some(
                "the relay wants a login (or STARTTLS) first: set smtp.username/password and \
                 security = \"starttls\""
                    .to_owned(),
            );
        }
        if lower.contains("lookup address") || lower.contains("name or service not known") {
            return Some(format!(
                "smtp.host = {:?} does not resolve: check the host name",
                config.host
            ));
        }
        if message.starts_with(CONNECT_TIMEOUT) {
            return Some(format!(
                "check smtp.host and smtp.port, and that no firewall blocks {addr}"
            ));
        }
        None
    }
}

// Opening words of the messages `hint` recognises.
const CONNECT_TIMEOUT: &str = "no answer from";
const NO_GREETING: &str = "no SMTP greeting from";
const BAD_GREETING: &str = "unexpected greeting from";
const TLS_HANDSHAKE: &str = "TLS handshake with";
const TLS_CERTIFICATE: &str = "TLS certificate of";
const NO_STARTTLS: &str = "does not offer STARTTLS";
const AUTH_FAILED: &str = "authentication failed";
const NO_AUTH_MECHANISM: &str = "offers no authentication method";

/// Builds and DKIM-signs messages and opens connections; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    config: SmtpConfig,
    /// The name given in EHLO: `smtp.helo_name`, or the from address's domain.
    helo: String,
    timeout: Duration,
    /// Holds the rustls connector (certificate verification on, platform trust store); None for
    /// `security = "none"`. mail-send names the connector type only through this builder.
    tls: Option<SmtpClientBuilder<String>>,
    dkim: Option<DkimSigner<DkimKey, Done>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("Mailer")
            .field("host", &c.host)
            .field("port", &c.port)
            .field("security", &c.security)
            .field("dkim", &self.inner.dkim.is_some())
            .finish()
    }
}

impl Mailer {
    /// Checks the settings and loads the DKIM key, so a wrong path or key shows at startup
    /// rather than on the first email.
    pub fn new(config: &SmtpConfig) -> Result<Mailer, SmtpError> {
        if config.host.trim().is_empty() {
            return Err(SmtpError::Config(
                "smtp.host is empty: set it to your relay's host name".to_owned(),
            ));
        }
        if !is_address(&config.from_address) {
            return Err(SmtpError::Config(format!(
                "smtp.from_address = {:?} is not an email address: set it to the sender, e.g. \
                 \"billing@example.com\"",
                config.from_address
            )));
        }
        if !config.reply_to.is_empty() && !is_address(&config.reply_to) {
            return Err(SmtpError::Config(format!(
                "smtp.reply_to = {:?} is not an email address",
                config.reply_to
            )));
        }
        if config.timeout_secs == 0 {
            return Err(SmtpError::Config(
                "smtp.timeout_secs = 0: set a timeout of at least 1 second".to_owned(),
            ));
        }
        let helo = if config.helo_name.trim().is_empty() {
            domain_of(&config.from_address).to_owned()
        } else {
            config.helo_name.trim().to_owned()
        };
        let tls = match config.security {
            SmtpSecurity::None => None,
            SmtpSecurity::Starttls | SmtpSecurity::Tls => Some(
                SmtpClientBuilder::new(config.host.clone(), config.port).map_err(|e| {
                    SmtpError::Config(format!("cannot set up TLS certificate checks: {e}"))
                })?,
            ),
        };
        Ok(Mailer {
            inner: Arc::new(Inner {
                config: config.clone(),
                helo,
                timeout: Duration::from_secs(config.timeout_secs),
                tls,
                dkim: load_dkim(config)?,
            }),
        })
    }

    pub fn config(&self) -> &SmtpConfig {
        &self.inner.config
    }

    /// `<{delivery_id}.{created_at}@{domain of the from address}>`: the same for every attempt
    /// at one delivery.
    pub fn message_id(&self, email: &OutgoingEmail) -> String {
        format!(
            "<{}.{}@{}>",
            email.delivery_id,
            email.created_at,
            domain_of(self.sender(email))
        )
    }

    /// The full RFC 5322 message, DKIM-signed when configured.
    pub fn build(&self, email: &OutgoingEmail) -> Result<Vec<u8>, SmtpError> {
        self.build_with_id(email, &self.message_id(email))
    }

    fn sender<'a>(&'a self, email: &OutgoingEmail<'a>) -> &'a str {
        self.from_address(email.from_address)
    }

    /// The From address of an email whose integration has `own` (or none): that one, else
    /// `smtp.from_address`.
    pub fn from_address<'a>(&'a self, own: Option<&'a str>) -> &'a str {
        own.map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or(self.inner.config.from_address.trim())
    }

    fn build_with_id(&self, email: &OutgoingEmail, message_id: &str) -> Result<Vec<u8>, SmtpError> {
        let c = &self.inner.config;
        let from = self.sender(email);
        if !is_address(from) {
            return Err(SmtpError::InvalidAddress(format!(
                "invalid sender address {from:?}: fix the integration's from address"
            )));
        }
        check_recipient(email.to)?;

        let mut builder = MessageBuilder::new()
            .from(named("From", &c.from_name, from))
            .to(named("To", email.to_name.unwrap_or(""), email.to.trim()));
        if !c.reply_to.is_empty() {
            builder = builder.reply_to(c.reply_to.as_str());
        }
        let message = builder
            .subject(one_line(email.subject))
            .date(Date::now())
            .message_id(message_id.trim_start_matches('<').trim_end_matches('>'))
            .text_body(email.text)
            .html_body(email.html)
            .write_to_vec()
            .map_err(|e| SmtpError::Build(e.to_string()))?;

        let Some(signer) = &self.inner.dkim else {
            return Ok(message);
        };
        let signature = signer
            .sign(&message)
            .map_err(|e| SmtpError::Build(format!("DKIM signing failed: {e}")))?;
        let mut signed = Vec::with_capacity(message.len() + 512);
        signature.write_header(&mut signed);
        signed.extend_from_slice(&message);
        Ok(signed)
    }

    /// Opens a connection ready for `send`: TCP with `TCP_NODELAY`, then plain, STARTTLS or
    /// implicit TLS as configured (certificates verified), EHLO, and AUTH when a username is set.
    pub async fn connect(&self) -> Result<SmtpConnection, SendError> {
        let inner = &*self.inner;
        let c = &inner.config;
        let addr = host_port(&c.host, c.port);
        let secs = c.timeout_secs;

        let tcp =
            tokio::time::timeout(inner.timeout, TcpStream::connect((c.host.as_str(), c.port)))
                .await
                .map_err(|_| {
                    SendError::transient(format!("{CONNECT_TIMEOUT} {addr} within {secs} s"))
                })?
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        SendError::transient(format!("connection refused by {addr}"))
                    } else {
                        SendError::transient(format!("cannot connect to {addr}: {e}"))
                    }
                })?;
        // The reason this module opens the socket itself; see the module comment.
        tcp.set_nodelay(true)
            .map_err(|e| SendError::transient(format!("cannot set TCP_NODELAY: {e}")))?;
        let nodelay = tcp.nodelay().unwrap_or(false);

        let mut plain = SmtpClient {
            stream: tcp,
            timeout: inner.timeout,
        };
        let mut client: SmtpClient<Box<dyn Stream>> =
            match (c.security, &inner.tls) {
                (SmtpSecurity::Tls, Some(tls)) => {
                    let tls_client = plain
                        .into_tls(&tls.tls_connector, &c.host)
                        .await
                        .map_err(|e| tls_error(&addr, secs, e))?;
                    let mut client = boxed(tls_client);
                    greeting(&mut client, &addr, secs).await?;
                    client
                }
                (SmtpSecurity::Starttls, Some(tls)) => {
                    greeting(&mut plain, &addr, secs).await?;
                    let ehlo = plain
                        .ehlo(&inner.helo)
                        .await
                        .map_err(|e| command_error("EHLO", secs, e))?;
                    if !ehlo.has_capability(EXT_START_TLS) {
                        return Err(SendError::transient(format!("{addr} {NO_STARTTLS}")));
                    }
                    let tls_client = plain.start_tls(&tls.tls_connector, &c.host).await.map_err(
                        |e| match e {
                            mail_send::Error::UnexpectedReply(r) => SendError::transient(format!(
                                "{addr} refused STARTTLS: {}",
                                reply_text(r.code, r.esc, &r.message)
                            )),
                            other => tls_error(&addr, secs, other),
                        },
                    )?;
                    boxed(tls_client)
                }
                _ => {
                    greeting(&mut plain, &addr, secs).await?;
                    boxed(plain)
                }
            };

        let capabilities = client
            .ehlo(&inner.helo)
            .await
            .map_err(|e| command_error("EHLO", secs, e))?;
        if !c.username.is_empty() {
            let credentials = Credentials::new(c.username.clone(), c.password.expose().to_owned());
            client
                .authenticate(&credentials, &capabilities)
                .await
                .map_err(|e| match e {
                    mail_send::Error::AuthenticationFailed(r)
                    | mail_send::Error::UnexpectedReply(r) => SendError::transient(format!(
                        "{AUTH_FAILED} for the SMTP username {:?}: {}",
                        c.username,
                        reply_text(r.code, r.esc, &r.message)
                    )),
                    mail_send::Error::UnsupportedAuthMechanism => SendError::transient(format!(
                        "{addr} {NO_AUTH_MECHANISM} this client has (PLAIN, LOGIN, CRAM-MD5, \
                         DIGEST-MD5)"
                    )),
                    other => command_error("AUTH", secs, other),
                })?;
        }

        Ok(SmtpConnection {
            client,
            nodelay,
            pipelining: capabilities.has_capability(EXT_PIPELINING),
            secs,
            broken: false,
            needs_reset: false,
        })
    }
}

/// Reads the server's greeting with the command timeout (mail-send reads it without one).
async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    addr: &str,
    secs: u64,
) -> Result<(), SendError> {
    let timeout = client.timeout;
    match tokio::time::timeout(timeout, client.read()).await {
        Err(_) => Err(SendError::transient(format!(
            "{NO_GREETING} {addr} within {secs} s"
        ))),
        Ok(Ok(r)) if (200..300).contains(&r.code) => Ok(()),
        Ok(Ok(r)) => Err(SendError::transient(format!(
            "{BAD_GREETING} {addr}: {}",
            reply_text(r.code, r.esc, &r.message)
        ))),
        Ok(Err(mail_send::Error::UnparseableReply)) => Err(SendError::transient(format!(
            "{BAD_GREETING} {addr}: the connection closed or the reply is not SMTP"
        ))),
        Ok(Err(e)) => Err(command_error("greeting", secs, e)),
    }
}

/// The connection's byte stream, plain or TLS; boxed because mail-send does not export the TLS
/// stream's type.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn boxed<S: Stream + 'static>(client: SmtpClient<S>) -> SmtpClient<Box<dyn Stream>> {
    SmtpClient {
        stream: Box::new(client.stream),
        timeout: client.timeout,
    }
}

/// An open, greeted and authenticated SMTP connection that sends any number of messages.
pub struct SmtpConnection {
    client: SmtpClient<Box<dyn Stream>>,
    nodelay: bool,
    /// The server offered PIPELINING: the envelope goes in one write, one round trip.
    pipelining: bool,
    secs: u64,
    /// An I/O error or timeout left the conversation in an unknown state: replies could arrive
    /// late and be read as the answer to the next command, so nothing more is sent.
    broken: bool,
    /// A transaction failed with a reply; RSET comes before the next MAIL FROM.
    needs_reset: bool,
}

impl std::fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("broken", &self.broken)
            .field("needs_reset", &self.needs_reset)
            .finish()
    }
}

impl SmtpConnection {
    /// Whether `TCP_NODELAY` is on for this connection's socket (read back from the kernel
    /// right after setting it).
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// False after an I/O error or timeout: open a new connection instead.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// MAIL FROM / RCPT TO / DATA on this connection; returns the Message-ID. Each command has
    /// the configured timeout. After a failure the connection can be reused once `reset`
    /// succeeds (a send after a failed one resets by itself).
    pub async fn send(
        &mut self,
        mailer: &Mailer,
        email: &OutgoingEmail<'_>,
    ) -> Result<String, SendError> {
        Ok(self.send_replied(mailer, email).await?.0)
    }

    /// As `send`, also returning the relay's reply to the message (`250 2.0.0 Ok: queued as …`),
    /// which the delivery log keeps.
    pub async fn send_replied(
        &mut self,
        mailer: &Mailer,
        email: &OutgoingEmail<'_>,
    ) -> Result<(String, String), SendError> {
        let message_id = mailer.message_id(email);
        let reply = self.send_with_id(mailer, email, &message_id).await?;
        Ok((message_id, reply))
    }

    /// Sends with the given Message-ID and returns the server's reply to the message.
    async fn send_with_id(
        &mut self,
        mailer: &Mailer,
        email: &OutgoingEmail<'_>,
        message_id: &str,
    ) -> Result<String, SendError> {
        // Checked before anything else so an impossible recipient never reaches the server.
        check_recipient(email.to)?;
        let message = mailer.build_with_id(email, message_id)?;
        if self.needs_reset {
            self.reset().await?;
        }
        self.ensure_usable()?;
        let from = mailer.sender(email).to_owned();
        let result = self.transaction(&from, email.to.trim(), &message).await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "SMTP transaction failed");
            self.needs_reset = true;
        }
        result
    }

    async fn transaction(
        &mut self,
        from: &str,
        to: &str,
        message: &[u8],
    ) -> Result<String, SendError> {
        if self.pipelining {
            self.pipelined_envelope(from, to).await?;
        } else {
            self.command("MAIL FROM", format!("MAIL FROM:<{from}>\r\n"), 250)
                .await?;
            self.command("RCPT TO", format!("RCPT TO:<{to}>\r\n"), 250)
                .await?;
            self.command("DATA", "DATA\r\n".to_owned(), 354).await?;
        }
        let timeout = self.client.timeout;
        let client = &mut self.client;
        let reply = tokio::time::timeout(timeout, async {
            client.write_message(message).await?;
            client.read().await
        })
        .await
        .map_err(|_| mail_send::Error::Timeout)
        .and_then(|r| r);
        match reply {
            Ok(r) if (200..300).contains(&r.code) => Ok(reply_text(r.code, r.esc, &r.message)),
            Ok(r) => Err(reply_error("message", r.code, r.esc, &r.message)),
            Err(e) => Err(self.io_failure("message", e)),
        }
    }

    /// MAIL FROM, RCPT TO and DATA in one write, then their three replies in order (RFC 2920).
    /// Every reply is read even after a refusal, so the conversation stays in step.
    async fn pipelined_envelope(&mut self, from: &str, to: &str) -> Result<(), SendError> {
        let envelope = format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n");
        let timeout = self.client.timeout;
        let stream = &mut self.client.stream;
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(envelope.as_bytes()).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| mail_send::Error::Timeout)
        .and_then(|r| r.map_err(mail_send::Error::Io));
        if let Err(e) = written {
            return Err(self.io_failure("MAIL FROM", e));
        }
        // read_many keeps what arrives after one reply for the next: the three replies often
        // come in one segment.
        let client = &mut self.client;
        let replies = tokio::time::timeout(timeout, client.read_many(3))
            .await
            .map_err(|_| mail_send::Error::Timeout)
            .and_then(|r| r);
        let replies = match replies {
            Ok(replies) => replies,
            Err(e) => return Err(self.io_failure("MAIL FROM", e)),
        };
        let mut first_refusal = None;
        for ((name, expect), r) in [("MAIL FROM", 250), ("RCPT TO", 250), ("DATA", 354)]
            .into_iter()
            .zip(&replies)
        {
            if r.code / 100 != expect / 100 {
                first_refusal.get_or_insert_with(|| reply_error(name, r.code, r.esc, &r.message));
            } else if name == "DATA" && first_refusal.is_some() {
                // A server that says 354 to DATA after refusing the envelope now waits for a
                // message this client will not send: the connection cannot be reused.
                self.broken = true;
            }
        }
        match first_refusal {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Sends one command and checks the reply's code class (2xx, or 3xx for DATA).
    async fn command(&mut self, name: &str, line: String, expect: u16) -> Result<(), SendError> {
        match self.client.cmd(line.as_bytes()).await {
            Ok(r) if r.code / 100 == expect / 100 => Ok(()),
            Ok(r) => Err(reply_error(name, r.code, r.esc, &r.message)),
            Err(e) => Err(self.io_failure(name, e)),
        }
    }

    fn io_failure(&mut self, name: &str, e: mail_send::Error) -> SendError {
        self.broken = true;
        command_error(name, self.secs, e)
    }

    fn ensure_usable(&self) -> Result<(), SendError> {
        if self.broken {
            Err(SendError::transient(
                "the SMTP connection failed earlier and cannot be reused: open a new one",
            ))
        } else {
            Ok(())
        }
    }

    /// RSET after a failed transaction, so the connection can be reused.
    pub async fn reset(&mut self) -> Result<(), SendError> {
        self.ensure_usable()?;
        match self.client.cmd(b"RSET\r\n").await {
            Ok(r) if (200..300).contains(&r.code) => {
                self.needs_reset = false;
                Ok(())
            }
            Ok(r) => {
                // A server that refuses RSET is in a state this client does not know.
                self.broken = true;
                Err(SendError::transient(format!(
                    "RSET refused: {}",
                    reply_text(r.code, r.esc, &r.message)
                )))
            }
            Err(e) => Err(self.io_failure("RSET", e)),
        }
    }

    /// QUIT, ignoring errors: the messages are already accepted or not.
    pub async fn quit(self) {
        if !self.broken {
            let _ = self.client.quit().await;
        }
    }
}

/// Connects, sends a short test message to `to` and quits. Ok: a line naming the server's
/// reply and the Message-ID. Err: the error and, when known, the likely fix.
pub async fn send_test_email(
    config: &SmtpConfig,
    to: &str,
) -> Result<String, (SendError, Option<String>)> {
    let text = format!(
        "This is a test email from MailMyCustomer.\n\nIt went through {} with security = {:?}.\nIf you can read this, emails to your customers can be sent.\n",
        host_port(&config.host, config.port),
        config.security
    );
    let html = format!(
        "<p>This is a test email from MailMyCustomer.</p><p>It went through {} with security = \
         {:?}.<br>If you can read this, emails to your customers can be sent.</p>",
        host_port(&config.host, config.port),
        config.security
    );
    let email = OutgoingEmail {
        delivery_id: 0,
        created_at: 0,
        to,
        to_name: None,
        from_address: None,
        subject: TEST_SUBJECT,
        html: &html,
        text: &text,
    };
    send_now(config, &email).await
}

/// Sends one email that is no outbox row (a test) on a connection of its own, and says what
/// the relay replied, or why it failed with the likely fix.
pub async fn send_now(
    config: &SmtpConfig,
    email: &OutgoingEmail<'_>,
) -> Result<String, (SendError, Option<String>)> {
    let with_hint = |e: SendError| {
        let hint = e.hint(config);
        (e, hint)
    };
    let mailer = Mailer::new(config).map_err(|e| (SendError::permanent(e.to_string()), None))?;
    check_recipient(email.to).map_err(|e| (e.into(), None))?;

    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| (SendError::transient(format!("no randomness: {e}")), None))?;
    // Not an outbox row, so the Message-ID is random rather than derived from a delivery.
    let message_id = format!(
        "<test.{}@{}>",
        hex::encode(random),
        domain_of(email.from_address.unwrap_or(&config.from_address))
    );
    let mut connection = mailer.connect().await.map_err(with_hint)?;
    let reply = connection.send_with_id(&mailer, email, &message_id).await;
    connection.quit().await;
    let reply = reply.map_err(with_hint)?;
    Ok(format!(
        "{} accepted the test email to {}: \"{reply}\", Message-ID {message_id}",
        host_port(&config.host, config.port),
        email.to
    ))
}

/// A 4xx or 5xx reply to a transaction command. 5xx means this message will never be taken,
/// except for replies about this machine's permission to send (530 authentication required,
/// relay denied): those are settings to fix, after which the same message goes through.
fn reply_error(name: &str, code: u16, esc: [u8; 3], text: &str) -> SendError {
    let reply = reply_text(code, esc, text);
    let message = format!("{name} rejected: {reply}");
    let about_this_machine = code == 530 || reply.to_ascii_lowercase().contains("relay");
    if (500..600).contains(&code) && !about_this_machine {
        SendError::permanent(message)
    } else {
        SendError::transient(message)
    }
}

/// Failures without a usable reply: all worth a retry.
fn command_error(name: &str, secs: u64, e: mail_send::Error) -> SendError {
    SendError::transient(match e {
        mail_send::Error::Timeout => format!("{name}: no reply within {secs} s"),
        mail_send::Error::UnparseableReply => {
            format!("{name}: the server closed the connection or sent a reply that is not SMTP")
        }
        mail_send::Error::Io(e) => format!("{name}: connection error: {e}"),
        mail_send::Error::UnexpectedReply(r) | mail_send::Error::AuthenticationFailed(r) => {
            format!("{name} rejected: {}", reply_text(r.code, r.esc, &r.message))
        }
        other => format!("{name}: {other}"),
    })
}

fn tls_error(addr: &str, secs: u64, e: mail_send::Error) -> SendError {
    SendError::transient(match e {
        mail_send::Error::Tls(e) if e.to_string().contains("certificate") => {
            format!("{TLS_CERTIFICATE} {addr} rejected: {e}")
        }
        mail_send::Error::Timeout => {
            format!("{TLS_HANDSHAKE} {addr} failed: no answer within {secs} s")
        }
        mail_send::Error::InvalidTLSName => {
            format!("{TLS_HANDSHAKE} {addr} failed: the SMTP host is not a valid TLS server name")
        }
        other => format!("{TLS_HANDSHAKE} {addr} failed: {other}"),
    })
}

/// "550 5.1.1 mailbox unavailable": code, enhanced status code when given, text on one line.
fn reply_text(code: u16, esc: [u8; 3], text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if esc[0] == 0 {
        format!("{code} {text}")
    } else {
        format!("{code} {}.{}.{} {text}", esc[0], esc[1], esc[2])
    }
}

/// The reply code in a message that quotes a reply: `reply_text` always follows ": ".
pub fn reply_code(message: &str) -> Option<u16> {
    message.match_indices(": ").find_map(|(i, _)| {
        let rest = &message[i + 2..];
        let digits = rest.get(..3)?;
        let ends = rest[3..].starts_with(' ') || rest.len() == 3;
        (ends && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
            .filter(|c| (200..600).contains(c))
    })
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn check_recipient(to: &str) -> Result<(), SmtpError> {
    if is_address(to) {
        Ok(())
    } else {
        Err(SmtpError::InvalidAddress(format!(
            "invalid recipient address {to:?}"
        )))
    }
}

/// An address SMTP can carry without SMTPUTF8: `local@domain`, ASCII, nothing that could end
/// the command line or the angle brackets.
pub fn is_address(address: &str) -> bool {
    let address = address.trim();
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:@\"".contains(&b));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok && address.len() <= 254
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d).trim()
}

/// Display names and subjects come from customers and templates: line breaks and other control
/// characters become spaces so they can never start a new header.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// RFC 5322's recommended longest header line (the hard limit is 998). Within it, the single
/// encoded-word mail-builder writes for a display name also stays within RFC 2047's 75
/// characters.
const MAX_HEADER_LINE: usize = 78;

/// An address with its display name, shortened when needed so that `header`'s line stays
/// within `MAX_HEADER_LINE`: mail-builder writes a display name as one encoded-word and never
/// folds it, so a long name (Stripe allows 256 characters, a CJK one encodes to over 1,000
/// octets) would make a line relays refuse. The name is cut at a character boundary and ends in
/// "…"; when not even one character fits, the bare address is used.
fn named<'x>(header: &str, name: &str, address: &'x str) -> Address<'x> {
    let name = one_line(name);
    let with_name = |name: String| Address::from((name, address.to_owned()));
    if name.is_empty() {
        return Address::from(address);
    }
    if name_line_fits(header, &name, address) {
        return with_name(name);
    }
    let cut = |chars: usize| {
        let end = name
            .char_indices()
            .nth(chars)
            .map_or(name.len(), |(i, _)| i);
        format!("{}…", name[..end].trim_end())
    };
    // Binary search for the most characters that fit: `fits` always fits, `too_many` does not.
    let (mut fits, mut too_many) = (0, name.chars().count());
    while too_many - fits > 1 {
        let mid = (fits + too_many) / 2;
        if name_line_fits(header, &cut(mid), address) {
            fits = mid;
        } else {
            too_many = mid;
        }
    }
    if fits == 0 {
        Address::from(address)
    } else {
        with_name(cut(fits))
    }
}

/// Whether the line that carries the display name, as mail-builder writes `header: name
/// <address>`, is within `MAX_HEADER_LINE` octets. mail-builder moves a long address to a
/// folded line of its own, so only the name decides.
fn name_line_fits(header: &str, name: &str, address: &str) -> bool {
    let mut written = Vec::new();
    let start = header.len() + 2;
    Address::from((name, address))
        .write_header(&mut written, start)
        .expect("writing to a Vec cannot fail");
    let first_line = written.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    start + first_line.len() <= MAX_HEADER_LINE
}

fn load_dkim(config: &SmtpConfig) -> Result<Option<DkimSigner<DkimKey, Done>>, SmtpError> {
    let set = [
        &config.dkim_key_path,
        &config.dkim_selector,
        &config.dkim_domain,
    ]
    .map(|v| !v.trim().is_empty());
    match set {
        [false, false, false] => return Ok(None),
        [true, true, true] => {}
        _ => {
            return Err(SmtpError::Config(
                "DKIM needs smtp.dkim_key_path, smtp.dkim_selector and smtp.dkim_domain all set \
                 (or none of them)"
                    .to_owned(),
            ))
        }
    }
    let path = config.dkim_key_path.trim();
    let problem = |what: String| SmtpError::Config(format!("DKIM key {path}: {what}"));
    let pem = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let (label, der) = pem_decode(&pem).ok_or_else(|| {
        problem(
            "not a PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA \
             PRIVATE KEY-----)"
                .to_owned(),
        )
    })?;
    // The non-deprecated constructor takes a rustls-pki-types value, a crate this one does not
    // depend on directly; these parse the same DER.
    #[allow(deprecated)]
    let key: DkimKey = match label.as_str() {
        "RSA PRIVATE KEY" => RsaKey::<Sha256>::from_der(&der)
            .map_err(|e| problem(format!("not a usable RSA key: {e}")))?
            .into(),
        "PRIVATE KEY" => match Ed25519Key::from_pkcs8_maybe_unchecked_der(&der) {
            Ok(key) => key.into(),
            Err(_) => RsaKey::<Sha256>::from_pkcs8_der(&der)
                .map_err(|e| problem(format!("neither an Ed25519 nor a usable RSA key: {e}")))?
                .into(),
        },
        other => {
            return Err(problem(format!(
                "holds a {other:?}, not a private key: give an RSA or Ed25519 private key"
            )))
        }
    };
    let signer = DkimSigner::from_key(key)
        .domain(config.dkim_domain.trim())
        .selector(config.dkim_selector.trim())
        .headers(DKIM_HEADERS);
    // Signing once now turns a key the library accepts but cannot use into a startup error.
    signer
        .sign(b"From: a@b\r\n\r\ntest\r\n")
        .map_err(|e| problem(format!("cannot sign with it: {e}")))?;
    Ok(Some(signer))
}

/// The label and DER bytes of the first PEM block in `text`.
fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let der = base64_decode(&body[..end])?;
    Some((label.to_owned(), der))
}

/// Standard base64 with padding, whitespace ignored.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outbox runs sends on spawned tasks: these futures must be Send.
    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn check(mailer: &Mailer, connection: &mut SmtpConnection, email: &OutgoingEmail<'_>) {
            send(&mailer.connect());
            send(&connection.send(mailer, email));
            send(&send_test_email(&mailer.inner.config, "a@b"));
        }
        fn shared<T: Send + Sync + Clone>() {}
        shared::<Mailer>();
        let _ = check;
    }

    #[test]
    fn addresses() {
        for ok in [
            "a@b",
            "first.last+tag@example.com",
            "x_y@sub-domain.example.co.uk",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in [
            "not-an-address",
            "a@@b",
            "a@b@c",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a@example..com",
            "a@-x.com",
            "<a@b>",
            "a@b>\r\nRCPT TO:<c@d",
            "café@example.com",
        ] {
            assert!(!is_address(bad), "{bad}");
        }
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aA==").unwrap(), b"h");
        assert!(base64_decode("a*b=").is_none());
    }

    #[test]
    fn reply_codes_are_found() {
        assert_eq!(
            reply_text(550, [5, 1, 1], "mailbox\n unavailable"),
            "550 5.1.1 mailbox unavailable"
        );
        assert_eq!(reply_text(451, [0, 0, 0], "try later"), "451 try later");
        assert_eq!(reply_code("RCPT TO rejected: 550 5.1.1 x"), Some(550));
        assert_eq!(reply_code("connection refused by h:2525"), None);
        assert_eq!(reply_code("no answer from 10.250.0.1:550 within 5 s"), None);
        assert_eq!(
            reply_code("authentication failed for the SMTP username \"u\": 535 5.7.8 no"),
            Some(535)
        );
    }

    #[test]
    fn permission_replies_are_transient() {
        assert!(reply_error("RCPT TO", 550, [5, 1, 1], "no such user").is_permanent());
        assert!(!reply_error("RCPT TO", 554, [5, 7, 1], "Relay access denied").is_permanent());
        assert!(
            !reply_error("MAIL FROM", 530, [5, 7, 0], "Authentication required").is_permanent()
        );
        assert!(!reply_error("RCPT TO", 451, [4, 3, 0], "try later").is_permanent());
    }
}
