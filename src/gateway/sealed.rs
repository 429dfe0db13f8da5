//! A tool's credentials at rest: sealed (`sealing`) under the organization's key, bound
//! to their purpose (`tool:<id>:auth` for the organization's, `tool:<id>:credential:
//! <owner>` for a principal's own), opened only to be applied to a request.

use super::Gateway;
use super::credentials::Credential;
use super::validate::check_credential;
use crate::sealing::{SealError, Sealed};
use crate::service::{ServiceError, ServiceResult};
use crate::tenancy::Principal;

/// Who a principal's own credential belongs to: `user:<id>` or `api_key:<id>`.
pub fn owner_of(principal: &Principal) -> String {
    format!("{}:{}", principal.actor_type(), principal.actor_id())
}

/// The sealing purpose of a tool's organization credential.
pub fn auth_purpose(tool_id: &str) -> String {
    format!("tool:{tool_id}:auth")
}

/// The sealing purpose of a principal's own credential for a tool.
pub fn own_purpose(tool_id: &str, owner: &str) -> String {
    format!("tool:{tool_id}:credential:{owner}")
}

fn seal_error(e: SealError) -> ServiceError {
    match e {
        SealError::NoMasterKey => ServiceError::Unprocessable(
            "credentials cannot be stored: this devmesh has no master key. Set secrets.master_key \
             (or DEVMESH_SECRETS__MASTER_KEY) to 32 random bytes in base64, for example from \
             `openssl rand -base64 32`, and restart"
                .into(),
        ),
        e => ServiceError::Internal(format!("sealing a credential failed: {e}")),
    }
}

/// Opens a sealed credential. The error says why without the secret.
pub fn open_credential(
    gateway: &Gateway,
    organization_id: &str,
    purpose: &str,
    sealed: &str,
) -> Result<Credential, String> {
    let bytes = gateway
        .sealer
        .open(organization_id, purpose, &Sealed(sealed.to_string()))
        .map_err(|e| format!("the stored credential cannot be opened: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|_| "the stored credential cannot be read".to_string())
}

pub fn seal_credential(
    gateway: &Gateway,
    organization_id: &str,
    purpose: &str,
    credential: &Credential,
) -> ServiceResult<(String, String)> {
    check_credential(gateway, credential)?;
    let bytes = serde_json::to_vec(credential).expect("a credential serializes");
    let sealed = gateway
        .sealer
        .seal(organization_id, purpose, &bytes)
        .map_err(seal_error)?;
    Ok((credential.kind().to_string(), sealed.0))
}
