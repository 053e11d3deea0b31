//! What containerd's and the CRI's gRPC clients share: a channel over a Unix socket and one
//! unary call bounded by [`CALL_TIMEOUT`]. (Their event streams share `stream.rs`.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::Status;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint as GrpcEndpoint, Uri};

/// No single call may hold a runtime's watcher longer than this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC channel over the Unix socket `socket`, connected at once (a dead socket fails
/// here, within [`CALL_TIMEOUT`]).
///
/// # Errors
///
/// A message with the error's source chain when the socket cannot be connected (`ENOENT`,
/// `ECONNREFUSED`, `EACCES` in the text) or the connection does not come up in time.
pub(crate) async fn unix_channel(socket: &Path) -> Result<Channel, String> {
    let path: PathBuf = socket.to_path_buf();
    GrpcEndpoint::from_static("http://localhost")
        .connect_timeout(CALL_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|e| format!("{e}: {}", source_chain(&e)))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// One unary call of method `path` on `channel`, bounded by [`CALL_TIMEOUT`].
///
/// # Errors
///
/// The call's status; UNAVAILABLE when the channel is not ready, DEADLINE_EXCEEDED (with
/// `label`) after [`CALL_TIMEOUT`].
pub(crate) async fn unary<Q, R>(
    channel: &Channel,
    request: tonic::Request<Q>,
    path: PathAndQuery,
    label: &str,
) -> Result<R, Status>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    let call = async {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        Ok(grpc.unary(request, path, codec).await?.into_inner())
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded(label.to_string())))
}
