//! A gRPC event stream (containerd's `Subscribe`, the CRI's `GetContainerEvents`) read on a task
//! of its own, so a watcher can subscribe before it lists and still list at once: both runtimes
//! may send the stream's headers only with its first event.

use std::future::Future;

use tokio::sync::mpsc::{Receiver, channel};
use tonic::{Status, Streaming};

/// Aborts the task it holds when dropped (the watcher reconnects: its old reader must go).
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the stream with `open` on a new task and forwards each message, up to 256 queued. The
/// last item is an error: the one `open` or the stream gave, or UNAVAILABLE when the stream
/// ended. The task stops with the returned guard.
pub(super) fn read_on_task<T, F>(open: F) -> (Receiver<Result<T, Status>>, AbortOnDrop)
where
    T: Send + 'static,
    F: Future<Output = Result<Streaming<T>, Status>> + Send + 'static,
{
    let (tx, rx) = channel::<Result<T, Status>>(256);
    let reader = tokio::spawn(async move {
        let mut stream = match open.await {
            Ok(s) => s,
            Err(e) => return drop(tx.send(Err(e)).await),
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(Status::unavailable("the event stream ended")),
                Err(e) => Err(e),
            };
            let end = msg.is_err();
            if tx.send(msg).await.is_err() || end {
                return;
            }
        }
    });
    (rx, AbortOnDrop(reader))
}
