//! Access tokens: JWTs (HS256) that name the user and the organization, short-lived.
//! The signing key comes from `auth.jwt_secret`, or is made once and kept in the database
//! so that every node signs and checks with the same key.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::config::SecretString;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::{Db, settings};
use crate::tenancy::secrets;

const SETTINGS_KEY: &str = "auth.jwt_signing_secret";
const ISSUER: &str = "devmesh";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The organization's id.
    pub org: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub jti: String,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

pub struct Signer {
    configured: Option<SecretString>,
    keys: OnceCell<Keys>,
}

impl Signer {
    pub fn new(configured: Option<SecretString>) -> Self {
        Self {
            configured,
            keys: OnceCell::new(),
        }
    }

    async fn keys(&self, db: &Db) -> ServiceResult<&Keys> {
        self.keys
            .get_or_try_init(|| async {
                let secret = match &self.configured {
                    Some(s) => s.expose().to_string(),
                    None => {
                        settings::get_or_insert(
                            db,
                            SETTINGS_KEY,
                            &secrets::generate_signing_secret(),
                        )
                        .await?
                    }
                };
                Ok::<_, ServiceError>(Keys {
                    encoding: EncodingKey::from_secret(secret.as_bytes()),
                    decoding: DecodingKey::from_secret(secret.as_bytes()),
                })
            })
            .await
    }

    pub async fn issue(
        &self,
        db: &Db,
        user: &str,
        org: &str,
        ttl: std::time::Duration,
    ) -> ServiceResult<(String, chrono::DateTime<chrono::Utc>)> {
        let now = chrono::Utc::now();
        let expires =
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15));
        let claims = Claims {
            sub: user.to_string(),
            org: org.to_string(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
            iss: ISSUER.into(),
            jti: crate::tenancy::new_id(),
        };
        let keys = self.keys(db).await?;
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
            .map_err(|e| ServiceError::Internal(format!("cannot sign a token: {e}")))?;
        Ok((token, expires))
    }

    /// The claims of a valid, unexpired token signed by us.
    pub async fn verify(&self, db: &Db, token: &str) -> ServiceResult<Claims> {
        let keys = self.keys(db).await?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                ServiceError::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        "the access token has expired; refresh it".into()
                    }
                    _ => "the access token is not valid".into(),
                })
            })
    }
}
