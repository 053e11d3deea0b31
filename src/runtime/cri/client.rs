//! A gRPC client of a CRI runtime (`runtime.v1.RuntimeService`) over its Unix socket: one
//! unary call per method used, each bounded by [`CALL_TIMEOUT`], and the container event
//! stream.

use std::path::Path;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::proto;
pub use crate::runtime::grpc::CALL_TIMEOUT;
use crate::runtime::grpc::{unary, unix_channel};

/// A connection to a CRI runtime.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects to the socket (the connection is made at once, so a dead socket fails here).
    ///
    /// # Errors
    ///
    /// Why the socket did not answer, in words.
    pub async fn connect(socket: &Path) -> Result<Client, String> {
        Ok(Client {
            channel: unix_channel(socket).await?,
        })
    }

    /// One unary call of `runtime.v1.RuntimeService/<method>`, bounded by [`CALL_TIMEOUT`]
    /// (then DEADLINE_EXCEEDED). Public so that tests acting as the kubelet can make the
    /// calls ctrfsd itself never makes (RunPodSandbox, CreateContainer...).
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn call<Q, R>(&self, method: &str, req: Q) -> Result<R, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::try_from(format!("/runtime.v1.RuntimeService/{method}"))
            .map_err(|_| Status::invalid_argument("method name"))?;
        unary(&self.channel, tonic::Request::new(req), path, method).await
    }

    /// The runtime's name and versions.
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn version(&self) -> Result<proto::VersionResponse, Status> {
        self.call(
            "Version",
            proto::VersionRequest {
                version: "v1".into(),
            },
        )
        .await
    }

    /// Every container, in every state.
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn containers(&self) -> Result<Vec<proto::Container>, Status> {
        let r: proto::ListContainersResponse = self
            .call("ListContainers", proto::ListContainersRequest::default())
            .await?;
        Ok(r.containers)
    }

    /// Every pod sandbox.
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn sandboxes(&self) -> Result<Vec<proto::PodSandbox>, Status> {
        let r: proto::ListPodSandboxResponse = self
            .call("ListPodSandbox", proto::ListPodSandboxRequest::default())
            .await?;
        Ok(r.items)
    }

    /// The verbose status of container `id`; `None` if the runtime has no such container.
    ///
    /// # Errors
    ///
    /// The call's status (other than NOT_FOUND).
    pub async fn status(&self, id: &str) -> Result<Option<proto::ContainerStatusResponse>, Status> {
        let req = proto::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        match self.call("ContainerStatus", req).await {
            Ok(r) => Ok(Some(r)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The status of pod sandbox `id`; `None` if the runtime has no such sandbox.
    ///
    /// # Errors
    ///
    /// The call's status (other than NOT_FOUND).
    pub async fn sandbox(&self, id: &str) -> Result<Option<proto::PodSandboxStatus>, Status> {
        let req = proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        match self
            .call::<_, proto::PodSandboxStatusResponse>("PodSandboxStatus", req)
            .await
        {
            Ok(r) => Ok(r.status),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The container event stream (`GetContainerEvents`); UNIMPLEMENTED from runtimes that
    /// lack it (containerd before 1.7).
    pub(super) async fn events(
        &self,
    ) -> Result<tonic::Streaming<proto::ContainerEventResponse>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<
            proto::GetEventsRequest,
            proto::ContainerEventResponse,
        >::default();
        let path = PathAndQuery::from_static("/runtime.v1.RuntimeService/GetContainerEvents");
        let req = tonic::Request::new(proto::GetEventsRequest {});
        Ok(grpc.server_streaming(req, path, codec).await?.into_inner())
    }
}
