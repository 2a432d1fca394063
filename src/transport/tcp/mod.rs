//! `accessProto: tcp`: native RocketMQ remoting (work in progress, see issue 3).

use std::sync::Arc;

use super::{Transport, TransportError};
use crate::metadata::{Role, Settings};

/// Opens a TCP transport for one instance and role.
pub fn open(
    _instance: &str,
    _settings: Arc<Settings>,
    _role: Role,
) -> Result<Arc<dyn Transport>, TransportError> {
    Err(TransportError::Unsupported(
        "accessProto tcp is not available in this build".into(),
    ))
}
