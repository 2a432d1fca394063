//! `dapr.proto.components.v1.OutputBinding`: Init, Invoke (`create`), ListOperations, Ping.
//!
//! Invoke answers with the transport's send receipt, cut to what `sendReceipt` asks for
//! ([`contract::receipt_for_app`]).

use std::sync::Arc;

use tokio::time::Instant;

use tonic::{Request, Response, Status};

use super::{
    instance_of,
    instances::{ConnId, Instances},
    proto::{
        InvokeRequest, InvokeResponse, ListOperationsRequest, ListOperationsResponse,
        OutputBindingInitRequest, OutputBindingInitResponse, PingRequest, PingResponse,
        output_binding_server::OutputBinding,
    },
};
use crate::{
    error::Error,
    transport::{OutboundMessage, contract},
};

/// Operations this binding supports.
pub const OPERATIONS: &[&str] = &["create"];

/// The OutputBinding service.
pub struct OutputService {
    instances: Arc<Instances>,
}

impl OutputService {
    /// A service over `instances`.
    pub fn new(instances: Arc<Instances>) -> Self {
        OutputService { instances }
    }
}

#[tonic::async_trait]
impl OutputBinding for OutputService {
    async fn init(
        &self,
        req: Request<OutputBindingInitRequest>,
    ) -> Result<Response<OutputBindingInitResponse>, Status> {
        let name = instance_of(&req);
        let conn = req.extensions().get::<ConnId>().copied();
        let props = req.into_inner().metadata.unwrap_or_default().properties;
        self.instances
            .init_output(&name, &props, conn)
            .await
            .inspect_err(|e| tracing::warn!(instance = %name, error = %e, "output Init failed"))?;
        Ok(Response::new(OutputBindingInitResponse {}))
    }

    async fn invoke(
        &self,
        req: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let name = instance_of(&req);
        let conn = req.extensions().get::<ConnId>().copied();
        let inst = self.instances.output_for_call(&name, conn)?;
        let req = req.into_inner();
        if !OPERATIONS.contains(&req.operation.as_str()) {
            return Err(Error::UnsupportedOperation {
                operation: req.operation,
                supported: OPERATIONS.join(", "),
            }
            .into());
        }
        let started = Instant::now();
        let result = inst
            .common
            .transport
            .send(OutboundMessage {
                data: req.data,
                metadata: req.metadata,
            })
            .await;
        inst.metrics.record(result.is_ok(), started.elapsed());
        let receipt = result
            .map_err(Error::from)
            .inspect_err(|e| tracing::debug!(instance = %name, error = %e, "send failed"))?;
        Ok(Response::new(InvokeResponse {
            data: Default::default(),
            metadata: contract::receipt_for_app(receipt, inst.common.settings.send_receipt),
            content_type: String::new(),
        }))
    }

    async fn list_operations(
        &self,
        _req: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        Ok(Response::new(ListOperationsResponse {
            operations: OPERATIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let conn = req.extensions().get::<ConnId>().copied();
        let inst = self.instances.output_for_call(&instance_of(&req), conn)?;
        inst.common.ping().await?;
        Ok(Response::new(PingResponse {}))
    }
}
