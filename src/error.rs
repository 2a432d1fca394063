//! The daemon's error type and its one mapping to `tonic::Status`.
//!
//! Every error a gRPC caller can see goes through [`Error`] and `From<Error> for Status`,
//! so codes are consistent: bad metadata or requests → `INVALID_ARGUMENT`, calls on an
//! instance daprd never initialised → `FAILED_PRECONDITION`, broker trouble →
//! `UNAVAILABLE`. Messages never contain secret values (metadata errors omit them by
//! construction; transport errors carry addresses and broker text only).

use tonic::{Code, Status};

use crate::{metadata::MetadataError, metadata::Role, transport::TransportError};

/// Errors returned by the Dapr-facing services.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Init metadata was rejected.
    #[error("Init metadata rejected: {0}")]
    Metadata(#[from] MetadataError),
    /// Read/Invoke/Ping on an instance that Init never created.
    #[error(
        "{role} binding instance {instance:?} is not initialised: call Init first \
         (was the daemon restarted after daprd started?)"
    )]
    NotInitialised { instance: String, role: Role },
    /// `InvokeRequest.operation` other than the supported ones.
    #[error("unsupported operation {operation:?}; supported operations: {supported}")]
    UnsupportedOperation {
        operation: String,
        supported: String,
    },
    /// Init or Ping could not reach the broker within its budget (`dapr::budget`).
    #[error("broker at {address} not reachable within {after:?} during {call}")]
    ProbeTimeout {
        /// `Init` or `Ping`.
        call: &'static str,
        address: String,
        after: std::time::Duration,
    },
    /// Init would create more instances than `--max-instances` allows.
    #[error(
        "this daemon already holds {max} component instances (--max-instances, env \
         ROCKETMQ_BINDING_MAX_INSTANCES); raise it or run another daemon"
    )]
    TooManyInstances { max: usize },
    /// The daemon is shutting down.
    #[error("the binding daemon is shutting down")]
    ShuttingDown,
    /// A transport failure.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::Metadata(_) | Error::UnsupportedOperation { .. } => Code::InvalidArgument,
            Error::NotInitialised { .. } => Code::FailedPrecondition,
            Error::ProbeTimeout { .. } | Error::ShuttingDown => Code::Unavailable,
            Error::TooManyInstances { .. } => Code::ResourceExhausted,
            Error::Transport(t) => match t {
                TransportError::Unavailable { .. } => Code::Unavailable,
                TransportError::Timeout { .. } => Code::DeadlineExceeded,
                TransportError::InvalidRequest { .. } | TransportError::Config { .. } => {
                    Code::InvalidArgument
                }
                TransportError::NotFound(_) => Code::NotFound,
                TransportError::Unauthenticated { .. } => Code::Unauthenticated,
                TransportError::Rejected(_) => Code::FailedPrecondition,
                TransportError::Closed => Code::Unavailable,
                TransportError::Unsupported(_) => Code::Unimplemented,
            },
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let s: Status = Error::NotInitialised {
            instance: "orders".into(),
            role: Role::Input,
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("\"orders\""));
        let s: Status = Error::Transport(TransportError::Unavailable {
            address: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        })
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("127.0.0.1:1"));
    }
}
