//! The Docker-API client of an endpoint run by an unprivileged user (rootless Podman): every
//! request connects afresh to the socket checked by [`crate::trust::open_socket`] (no symlink,
//! a socket, owned by the user) and reads at most a bounded number of bytes per connection, so
//! what the user's endpoint answers cannot grow ctrfsd without bound:
//!
//! - [`RESPONSE_LIMIT`] per answer (a list, an inspect, a version);
//! - [`EVENTS_LIMIT`] per events connection: an endless event object stops there, and so does a
//!   long-lived stream, after which the watcher reconnects (backing off) and re-lists, so no
//!   change is missed; at ~500 bytes an event, that is every ~4,000 events.
//!
//! An answer (not an events stream) must also be complete within [`ANSWER_TIME`] of the
//! connection: bollard's timeout covers only the wait for the answer's head, and an endpoint
//! that sends its body one byte a second would otherwise keep the request, and the user's
//! watcher, waiting forever.
//!
//! bollard buffers a whole answer, and a whole event object, before decoding it; it has no
//! limit of its own, hence this one below it. It also tries to decode the buffered part of an
//! unfinished event at every read, so the time an endless object costs grows with the square
//! of its size: the events limit is small for that reason too.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bollard::errors::Error as DockerError;
use bollard::{BollardRequest, Docker};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// Bytes read at most for one answer of a user's endpoint (16 MiB: a list of 1,000
/// containers from Podman is about 3 MiB).
pub const RESPONSE_LIMIT: u64 = 16 << 20;

/// Bytes read at most on one events connection of a user's endpoint (2 MiB).
pub const EVENTS_LIMIT: u64 = 2 << 20;

/// Seconds an answer of a user's endpoint may take, head and body, from the connection (30 s,
/// bollard's own request timeout here).
pub const ANSWER_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// A client of the user `uid`'s endpoint at `socket`, with `timeout` seconds per request.
///
/// # Errors
///
/// None yet: the socket is checked when each request connects (a failed check fails that
/// request, with the reason).
pub fn connect(socket: &Path, uid: u32, timeout: u64) -> Result<Docker, DockerError> {
    let socket: PathBuf = socket.to_path_buf();
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let socket = socket.clone();
            async move { request(&socket, uid, req).await }
        },
        Some("http://localhost"),
        timeout,
        bollard::API_DEFAULT_VERSION,
    )
}

async fn request(
    socket: &Path,
    uid: u32,
    req: BollardRequest,
) -> Result<hyper::Response<hyper::body::Incoming>, DockerError> {
    let io_err = |err: io::Error| DockerError::IOError { err };
    let fd = crate::trust::open_socket(socket, uid).map_err(io_err)?;
    let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let stream = UnixStream::connect(&via).await.map_err(io_err)?;
    drop(fd);
    let (mut parts, body) = req.into_parts();
    let events = parts.uri.path().ends_with("/events");
    let limit = if events { EVENTS_LIMIT } else { RESPONSE_LIMIT };
    // Origin form ("/v1.41/containers/json"), as a server on a Unix socket expects it.
    let origin = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = origin
        .parse()
        .map_err(|e| io_err(io::Error::other(format!("{e}"))))?;
    parts.headers.insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_static("localhost"),
    );
    let capped = Capped {
        inner: stream,
        left: limit,
        limit,
        deadline: (!events).then(|| Box::pin(tokio::time::sleep(ANSWER_TIME))),
        socket: socket.display().to_string(),
    };
    let hyper_err = |e: hyper::Error| io_err(io::Error::other(e.to_string()));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(capped))
        .await
        .map_err(hyper_err)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("user endpoint connection: {e}");
        }
    });
    sender
        .send_request(hyper::Request::from_parts(parts, body))
        .await
        .map_err(hyper_err)
}

/// A stream that fails reads once `limit` bytes were read, or once `deadline` passed.
struct Capped {
    inner: UnixStream,
    left: u64,
    limit: u64,
    /// When an answer must be complete ([`ANSWER_TIME`]); `None` for an events stream.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The endpoint's socket, for the log (hyper reports only "error reading a body").
    socket: String,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(d) = self.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            let why = format!(
                "{}: the endpoint did not finish its answer within {} s (the limit for a \
                 user's endpoint): cut off",
                self.socket,
                ANSWER_TIME.as_secs()
            );
            log::warn!("{why}");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
        }
        if self.left == 0 {
            let limit = self.limit;
            return Poll::Ready(Err(io::Error::other(format!(
                "the endpoint sent more than {limit} bytes on one connection (the limit for a \
                 user's endpoint)"
            ))));
        }
        let before = buf.filled().len();
        if (buf.remaining() as u64) <= self.left {
            let r = Pin::new(&mut self.inner).poll_read(cx, buf);
            self.left -= (buf.filled().len() - before) as u64;
            return r;
        }
        // Less room left than the caller offers: read only that much (through a small buffer,
        // so no byte beyond the limit is ever taken off the socket).
        let mut small = [0u8; 4096];
        let room = small
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut sub = ReadBuf::new(&mut small[..room]);
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut sub);
        let n = sub.filled().len();
        buf.put_slice(sub.filled());
        self.left -= n as u64;
        r
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
