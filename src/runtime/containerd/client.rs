//! A gRPC client of containerd over its Unix socket: one unary call per API method used, each
//! bounded by `grpc::CALL_TIMEOUT` (10 s), and the event subscription.

use std::path::Path;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::proto;
use crate::runtime::grpc::{unary, unix_channel};

/// A connection to containerd.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects to the socket (the connection is made at once, so a dead socket fails here).
    ///
    /// # Errors
    ///
    /// A message with the error's source chain when the socket cannot be connected (`ENOENT`,
    /// `ECONNREFUSED`, `EACCES` in the text) or the connection does not come up within
    /// `CALL_TIMEOUT` (10 s).
    pub async fn connect(socket: &Path) -> Result<Client, String> {
        Ok(Client {
            channel: unix_channel(socket).await?,
        })
    }

    /// One unary call of method `path`, in namespace `ns` if given, bounded by
    /// `grpc::CALL_TIMEOUT` (10 s) (then DEADLINE_EXCEEDED).
    async fn unary<Q, R>(&self, path: &'static str, ns: Option<&str>, req: Q) -> Result<R, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(req);
        if let Some(ns) = ns {
            let v = ns
                .parse()
                .map_err(|_| Status::invalid_argument("namespace"))?;
            request.metadata_mut().insert("containerd-namespace", v);
        }
        unary(
            &self.channel,
            request,
            PathAndQuery::from_static(path),
            path,
        )
        .await
    }

    /// Every namespace's name.
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn namespaces(&self) -> Result<Vec<String>, Status> {
        let r: proto::ListNamespacesResponse = self
            .unary(
                "/containerd.services.namespaces.v1.Namespaces/List",
                None,
                proto::ListNamespacesRequest::default(),
            )
            .await?;
        Ok(r.namespaces.into_iter().map(|n| n.name).collect())
    }

    /// Every container of namespace `ns`.
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn containers(&self, ns: &str) -> Result<Vec<proto::Container>, Status> {
        let r: proto::ListContainersResponse = self
            .unary(
                "/containerd.services.containers.v1.Containers/List",
                Some(ns),
                proto::ListContainersRequest::default(),
            )
            .await?;
        Ok(r.containers)
    }

    /// Every task of namespace `ns` (a container's main task has the container's id).
    ///
    /// # Errors
    ///
    /// The call's status.
    pub async fn tasks(&self, ns: &str) -> Result<Vec<proto::Process>, Status> {
        let r: proto::ListTasksResponse = self
            .unary(
                "/containerd.services.tasks.v1.Tasks/List",
                Some(ns),
                proto::ListTasksRequest::default(),
            )
            .await?;
        Ok(r.tasks)
    }

    /// Container `id` of namespace `ns`; `None` if there is none.
    pub(super) async fn container(
        &self,
        ns: &str,
        id: &str,
    ) -> Result<Option<proto::Container>, Status> {
        let req = proto::GetContainerRequest { id: id.into() };
        match self
            .unary::<_, proto::GetContainerResponse>(
                "/containerd.services.containers.v1.Containers/Get",
                Some(ns),
                req,
            )
            .await
        {
            Ok(r) => Ok(r.container),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The main task of container `id` in `ns`; `None` if it has none.
    pub(super) async fn task(&self, ns: &str, id: &str) -> Result<Option<proto::Process>, Status> {
        let req = proto::GetTaskRequest {
            container_id: id.into(),
            exec_id: String::new(),
        };
        match self
            .unary::<_, proto::GetTaskResponse>(
                "/containerd.services.tasks.v1.Tasks/Get",
                Some(ns),
                req,
            )
            .await
        {
            Ok(r) => Ok(r.process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The mounts of a container's snapshot; `None` if containerd has no such snapshot.
    pub(super) async fn mounts(
        &self,
        ns: &str,
        snapshotter: &str,
        key: &str,
    ) -> Result<Option<Vec<proto::Mount>>, Status> {
        let req = proto::MountsRequest {
            snapshotter: snapshotter.into(),
            key: key.into(),
        };
        match self
            .unary::<_, proto::MountsResponse>(
                "/containerd.services.snapshots.v1.Snapshots/Mounts",
                Some(ns),
                req,
            )
            .await
        {
            Ok(r) => Ok(Some(r.mounts)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The event stream of every namespace.
    pub(super) async fn subscribe(&self) -> Result<tonic::Streaming<proto::Envelope>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<proto::SubscribeRequest, proto::Envelope>::default();
        let req = tonic::Request::new(proto::SubscribeRequest::default());
        let path = PathAndQuery::from_static("/containerd.services.events.v1.Events/Subscribe");
        Ok(grpc.server_streaming(req, path, codec).await?.into_inner())
    }
}
