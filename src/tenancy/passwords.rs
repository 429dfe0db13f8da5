//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on the blocking
//! pool, never on a request worker.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::config::Argon2Config;

#[derive(Clone)]
pub struct PasswordHashing {
    params: Params,
    /// A hash of nothing, verified against when an account does not exist, so that a
    /// missing account takes as long to refuse as a wrong password.
    decoy: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl PasswordHashing {
    pub fn new(config: &Argon2Config) -> Self {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .expect("argon2 parameters are checked when the configuration is validated");
        Self {
            params,
            decoy: Default::default(),
        }
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string (`$argon2id$v=19$m=...`) of a password, with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, String> {
        let argon2 = self.argon2();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| format!("cannot hash a password: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Whether `password` matches `stored`; `None` for `stored` verifies against a decoy
    /// and is always false.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let real = stored.is_some();
        let stored = match stored {
            Some(s) => s.to_string(),
            None => match self.decoy.get() {
                Some(d) => d.clone(),
                None => {
                    let Ok(d) = self.hash("decoy password, never matches").await else {
                        return false;
                    };
                    self.decoy.get_or_init(|| d).clone()
                }
            },
        };
        let argon2 = self.argon2();
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            argon2
                .verify_password(password.as_bytes(), stored.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        ok && real
    }
}
