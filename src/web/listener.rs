//! The accept loop and the connection limits, in place of `poem::Server`, which bounds neither:
//! at most `max_connections` connections are served at once (more wait in the listen queue), a
//! connection must send its request headers within `header_timeout` and its next request within
//! `idle_timeout`, and a failed `accept` (out of file descriptors) backs off instead of retrying
//! at once. Each connection is served HTTP/1.1 by hyper around poem's endpoint, so the handlers
//! stay poem's. HTTP/2 over cleartext is not offered: Stripe and reverse proxies send webhooks
//! over HTTP/1.1, and h2c would bring stream limits of its own to bound.
//!
//! The body of a request is not timed here: the handler that reads one sets its deadline and
//! answers 408 (see `web::webhook`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::Endpoint;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// How connections are bounded; from the `[server]` config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: u32,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The most a request head (request line and headers) may take in memory. Stripe's are under
/// 2 KiB; hyper's default (about 400 KiB) would let a thousand slow clients hold 400 MB.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How many connections the kernel holds for `accept` beyond those being served: a burst (Stripe
/// catching up after an outage, a proxy opening its pool) waits here while the accept loop
/// catches up or while `max_connections` are busy. The standard library and tokio ask for 128;
/// once those are taken, Linux answers further handshakes with SYN cookies, and a client whose
/// body follows its request head before the accept is reset with nothing answered (CI saw a few
/// of 300 simultaneous clients reset so). The kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `address` (resolved; the first address that binds wins) with
/// `LISTEN_BACKLOG`, in place of `TcpListener::bind` and its 128.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let mut failed = None;
    for address in tokio::net::lookup_host(address).await? {
        let socket = match address {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind` does: a restart listens again while the old process's
        // connections linger in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// Serves `endpoint` on `listener` until `shutdown` resolves, then stops accepting, lets each
/// request in flight finish for up to `grace`, closes what is left and returns.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    E: Endpoint + 'static,
{
    let local = listener.local_addr()?;
    let endpoint = Arc::new(endpoint);
    // One permit per open connection; when all are out, the loop stops accepting and new
    // connections wait in the kernel's listen queue.
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop, _) = watch::channel(Stop::Serving);
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => match backoff.failed(&e) {
                None => continue,
                Some(pause) => tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                },
            },
        };
        let (endpoint, stop) = (endpoint.clone(), stop.subscribe());
        tokio::spawn(async move {
            serve_connection(stream, local, peer, endpoint, limits, stop).await;
            drop(permit);
        });
    }

    // Closing the listening socket refuses new connections while the open ones drain.
    drop(listener);
    let _ = stop.send(Stop::Draining);
    let all = limits.max_connections;
    if tokio::time::timeout(grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = all as usize - permits.available_permits(),
            "shutdown: closing the connections still open after server.shutdown_timeout_secs"
        );
        let _ = stop.send(Stop::Abort);
        let _ = permits.acquire_many(all).await;
    }
    Ok(())
}

/// What the accept loop tells the open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// The grace period is over: close now.
    Abort,
}

/// The pause after a failed `accept`. The usual failure is running out of file descriptors
/// (EMFILE): the waiting connection stays queued, so retrying at once fails again at once and
/// spins a core. Like Go's `net/http`, wait 5 ms, doubling up to 1 s, until an accept succeeds.
#[derive(Default)]
struct AcceptBackoff {
    failures: u64,
    pause: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// How long to wait before the next accept; `None` when the error concerned only the one
    /// connection (the client reset it while queued) and the next can be accepted at once.
    fn failed(&mut self, error: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind::*;
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
        ) {
            return None;
        }
        let pause = self.pause.map_or(Self::FIRST, |p| (p * 2).min(Self::MAX));
        if self.failures == 0 {
            tracing::error!(
                error = %error,
                "cannot accept connections; retrying every {}s at most. \"Too many open files\" means the open-file limit (LimitNOFILE, ulimit -n) is too low for server.max_connections plus the server's own files",
                Self::MAX.as_secs()
            );
        }
        self.failures += 1;
        self.pause = Some(pause);
        Some(pause)
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!(failed = self.failures, "accepting connections again");
        }
        *self = AcceptBackoff::default();
    }
}

async fn serve_connection<E: Endpoint + 'static>(
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    endpoint: Arc<E>,
    limits: Limits,
    mut stop: watch::Receiver<Stop>,
) {
    let clock = Arc::new(Clock::new(limits));
    let service = {
        let clock = clock.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let busy = clock.busy();
            let endpoint = endpoint.clone();
            // Boxed so the connection is `Unpin`, which taking its socket back needs.
            Box::pin(async move {
                let request = poem::Request::from((
                    request,
                    LocalAddr(local.into()),
                    RemoteAddr(peer.into()),
                    Scheme::HTTP,
                ));
                let response = endpoint.get_response(request).await;
                drop(busy);
                Ok::<_, Infallible>(hyper::Response::from(response))
            })
        })
    };
    let io = TokioIo::new(Watched {
        stream,
        clock: clock.clone(),
    });
    let mut connection = http1::Builder::new()
        // The header deadline is `Clock`'s: hyper's would also count the idle time before a
        // kept-alive connection's next request.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
    loop {
        tokio::select! {
            // Hyper is done with the connection, but the socket is ours to close.
            finished = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                // An error too may leave the client's bytes unread: hyper answers a malformed
                // head 400 and ends, while the client may still be sending its body.
                if let Err(error) = finished {
                    tracing::debug!(peer = %peer, error = %error, "a connection ended in an error");
                }
                let socket = connection.into_parts().io.into_inner().stream;
                linger(socket, peer, stop).await;
                return;
            }
            () = clock.expired() => {
                tracing::debug!(peer = %peer, "closing a connection that missed its deadline");
                return;
            }
            changed = stop.changed() => match changed.map(|()| *stop.borrow_and_update()) {
                // Lets the request in flight finish, then closes (at once when idle).
                Ok(Stop::Draining) => Pin::new(&mut connection).graceful_shutdown(),
                Ok(Stop::Serving) => {}
                Ok(Stop::Abort) | Err(_) => return,
            },
        }
    }
}

/// The most `linger` reads and drops, and for how long.
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Closes a connection without a reset. A refusal answered before its body was read (an
/// unknown integration, a body over the limit) leaves the client's bytes unread, and closing a
/// socket with unread bytes sends a reset: a client still writing its body then fails on the
/// write and never reads the answer. So, like nginx's lingering close: send our FIN, then read
/// and drop what the client still sends until it closes, up to `LINGER_BYTES` or
/// `LINGER_TIME`. A client that closed first costs one read.
async fn linger(mut socket: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<Stop>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if let Err(error) = socket.shutdown().await {
        tracing::debug!(peer = %peer, error = %error, "a connection could not be shut down");
        return;
    }
    let drain = async {
        let mut sink = vec![0; 16 * 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match socket.read(&mut sink).await {
                Ok(read) if read > 0 => left = left.saturating_sub(read),
                _ => return true,
            }
        }
        false
    };
    let aborted = async {
        while stop.changed().await.is_ok() {
            if *stop.borrow_and_update() == Stop::Abort {
                return;
            }
        }
    };
    // Closing now resets a client that is still sending, so say when it happens.
    tokio::select! {
        drained = tokio::time::timeout(LINGER_TIME, drain) => if drained != Ok(true) {
            tracing::debug!(
                peer = %peer,
                "closing a lingering connection whose client did not close within {LINGER_TIME:?} or {LINGER_BYTES} bytes"
            );
        },
        () = aborted => {}
    }
}

/// Where a connection is in its request cycle, with the deadline that applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head: from the accept, or from the first byte of a later request.
    Head(Instant),
    /// Kept alive after a response, waiting for the first byte of the next request.
    Idle(Instant),
    /// A handler has the request; it bounds its own work (the webhook its body's deadline).
    Busy,
}

/// One connection's deadlines, moved on by the bytes it reads (`Watched`) and by the handler
/// taking and answering a request (`busy`).
struct Clock {
    phase: watch::Sender<Phase>,
    limits: Limits,
}

impl Clock {
    fn new(limits: Limits) -> Clock {
        let phase = Phase::Head(Instant::now() + limits.header_timeout);
        Clock {
            phase: watch::Sender::new(phase),
            limits,
        }
    }

    /// The connection read bytes: on an idle connection they start a request head.
    fn read_bytes(&self) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Idle(_) => {
                *phase = Phase::Head(Instant::now() + self.limits.header_timeout);
                true
            }
            Phase::Head(_) | Phase::Busy => false,
        });
    }

    /// A handler took a request; the connection is idle again when the guard drops.
    fn busy(self: &Arc<Self>) -> BusyGuard {
        self.phase.send_replace(Phase::Busy);
        BusyGuard(self.clone())
    }

    /// Resolves when the current phase's deadline passes.
    async fn expired(&self) {
        let mut phase = self.phase.subscribe();
        loop {
            let deadline = match *phase.borrow_and_update() {
                Phase::Head(at) | Phase::Idle(at) => Some(at),
                Phase::Busy => None,
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => return,
                // `self` holds the sender, so this only wakes on a change.
                _ = phase.changed() => {}
            }
        }
    }
}

struct BusyGuard(Arc<Clock>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let clock = &self.0;
        clock
            .phase
            .send_replace(Phase::Idle(Instant::now() + clock.limits.idle_timeout));
    }
}

/// The socket, telling the connection's `Clock` when bytes arrive.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read_bytes();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
