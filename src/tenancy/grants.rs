//! Grants: the authority that a long-lived connection or stream holds from the credential
//! that opened it (a WebSocket, an MCP session and its GET stream, a `subscriptions/listen`
//! stream; later agent connections and upstream sessions).
//!
//! Authorization is a property of every request, not of a connection: a request on a
//! grant is authorized again with [`Grant::authorize`], so a revoked or expired credential
//! is refused at once. And the holder of a grant waits on [`Grant::ended`] besides its
//! work: this node's [`Grants`] watcher re-checks every live grant whenever the `auth`
//! generation moves (or cannot be read) and at each credential's expiry, every
//! `auth.recheck_interval`, and ends the grants whose credential no longer stands
//! (revoked, expired, its user removed) or whose scopes were reduced. The holder then closes
//! with a reason that says which ([`Ended`]). Every node runs the watcher over its own
//! grants, so a revocation made on one node closes connections on all of them within the
//! interval, whether or not the bus carried any message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::authenticate::{AUTH, authenticate};
use super::{Principal, TenancyState};
use crate::context::Context;
use crate::service::{ServiceError, ServiceResult};

/// Why a grant ended. The transports turn it into a close code or a stream's last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub kind: EndKind,
    /// In words, for the client: "the API key was revoked", "the access token has expired".
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// The credential is no longer valid: revoked, its user removed. Reconnecting with it
    /// will not work.
    Revoked,
    /// The credential has expired: reconnect with a fresh one.
    Expired,
    /// The credential still works, with fewer scopes than the connection was opened with:
    /// reconnect to go on with the new ones.
    Reduced,
}

/// A credential a grant re-checks. Never printed.
struct Credential(String);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

struct State {
    /// `None`: the anonymous tenant's principal, which nothing revokes.
    credential: Option<Credential>,
    principal: Principal,
}

/// One connection's or stream's authority. Dropping it forgets it.
pub struct Grant {
    id: u64,
    state: Mutex<State>,
    ended: CancellationToken,
    reason: OnceLock<Ended>,
    registry: Weak<Grants>,
}

impl Grant {
    /// The principal as of the last check.
    pub fn principal(&self) -> Principal {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .principal
            .clone()
    }

    /// The principal for a request made now: the credential authenticated again (a cached
    /// key costs no database round trip). A credential that no longer stands ends the
    /// grant and refuses the request.
    pub async fn authorize(
        &self,
        ctx: &Context,
        tenancy: &TenancyState,
    ) -> ServiceResult<Principal> {
        let checked = self.check(ctx, tenancy).await;
        self.settle(&checked);
        checked
    }

    /// [`Grant::authorize`] without its consequence: the caller answers the request first,
    /// then hands the outcome to [`Grant::settle`] (so that a refusal reaches the client
    /// before the connection closes).
    pub async fn check(&self, ctx: &Context, tenancy: &TenancyState) -> ServiceResult<Principal> {
        if let Some(ended) = self.reason() {
            return Err(ServiceError::Unauthenticated(ended.message.clone()));
        }
        match self.credential() {
            Some(credential) => authenticate(ctx, tenancy, &credential).await,
            None => Ok(self.principal()),
        }
    }

    /// Takes the credential a later request of the same caller authenticated with (a
    /// session's requests each carry one, and an access token is refreshed meanwhile),
    /// and what it authenticated as: fewer scopes end the grant, as a check would.
    pub fn renew(&self, credential: Option<&str>, principal: &Principal) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .credential = credential.map(|c| Credential(c.to_string()));
        self.settle(&Ok(principal.clone()));
    }

    /// Resolves when the grant has ended; then [`Grant::reason`] says why.
    pub async fn ended(&self) -> &Ended {
        self.ended.cancelled().await;
        self.reason().expect("a grant ends with its reason")
    }

    pub fn reason(&self) -> Option<&Ended> {
        self.reason.get()
    }

    fn credential(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.credential.as_ref().map(|c| c.0.clone())
    }

    fn end(&self, kind: EndKind, message: impl Into<String>) {
        if self
            .reason
            .set(Ended {
                kind,
                message: message.into(),
            })
            .is_ok()
        {
            metrics::counter!("devmesh_auth_grants_ended_total", "reason" => kind.label())
                .increment(1);
            self.ended.cancel();
        }
    }

    /// Applies the outcome of a check: ends the grant when the credential no longer
    /// stands or lost scopes; keeps the new principal otherwise.
    pub fn settle(&self, checked: &ServiceResult<Principal>) {
        match checked {
            Ok(principal) => {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let lost = state.principal.scopes.missing_from(&principal.scopes);
                if lost.is_empty() {
                    state.principal = principal.clone();
                } else {
                    drop(state);
                    let names: Vec<&str> = lost.iter().map(|s| s.as_str()).collect();
                    self.end(
                        EndKind::Reduced,
                        format!(
                            "the credential no longer holds {}; reconnect to go on with its current scopes",
                            names.join(", ")
                        ),
                    );
                }
            }
            Err(ServiceError::Unauthenticated(message)) => {
                let principal = self.principal();
                if principal
                    .expires_at
                    .is_some_and(|at| at <= crate::storage::now())
                {
                    self.end(EndKind::Expired, message.clone());
                } else if let super::Actor::ApiKey { .. } = principal.actor {
                    // It worked when the grant was made: saying so tells nothing new.
                    self.end(EndKind::Revoked, "the API key was revoked");
                } else {
                    self.end(EndKind::Revoked, message.clone());
                }
            }
            // The database or the bus is away: nothing is known, nothing is ended.
            Err(_) => {}
        }
    }

    /// Ends the grant if its credential's time is up; true if it did.
    fn expire_if_due(&self, now: chrono::NaiveDateTime) -> bool {
        let principal = self.principal();
        if principal.expires_at.is_none_or(|at| at > now) {
            return false;
        }
        let what = match principal.actor {
            super::Actor::User { .. } => "the access token has expired; refresh it and reconnect",
            super::Actor::ApiKey { .. } => "the API key has expired",
        };
        self.end(EndKind::Expired, what);
        true
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

impl EndKind {
    pub fn label(self) -> &'static str {
        match self {
            EndKind::Revoked => "revoked",
            EndKind::Expired => "expired",
            EndKind::Reduced => "reduced",
        }
    }
}

/// This node's live grants, and the watcher that ends them.
#[derive(Default)]
pub struct Grants {
    live: Mutex<HashMap<u64, Weak<Grant>>>,
    next: AtomicU64,
    wake: Notify,
}

impl Grants {
    /// A grant for a connection or stream opened with `credential` (`None`: the anonymous
    /// tenant) as `principal`.
    pub fn grant(self: &Arc<Self>, credential: Option<&str>, principal: Principal) -> Arc<Grant> {
        let grant = Arc::new(Grant {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(State {
                credential: credential.map(|c| Credential(c.to_string())),
                principal,
            }),
            ended: CancellationToken::new(),
            reason: OnceLock::new(),
            registry: Arc::downgrade(self),
        });
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(grant.id, Arc::downgrade(&grant));
        grant
    }

    /// How many grants are live on this node.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-checks at once instead of at the next tick (this node just took authority away).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Watches this node's grants (those of `tenancy`) until `shutdown`.
    pub async fn watch(tenancy: Arc<TenancyState>, ctx: Context, shutdown: CancellationToken) {
        let this = &tenancy.grants;
        let every = ctx.config.auth.recheck_interval.get();
        let mut seen = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                _ = this.wake.notified() => {}
            }
            seen = this.recheck(&ctx, &tenancy, seen).await;
        }
    }

    /// One round: the database's generation (see `authenticate`), every grant's expiry,
    /// and, when a generation moved since `seen` (or cannot be read), every credential
    /// again (each distinct one once). Returns the bus's generation seen now.
    async fn recheck(
        &self,
        ctx: &Context,
        tenancy: &TenancyState,
        seen: Option<Arc<str>>,
    ) -> Option<Arc<str>> {
        // The database's copy of the generation, which no bus can roll back.
        let truth_moved = super::authenticate::check_database_generation(ctx, tenancy).await;
        let grants: Vec<Arc<Grant>> = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.values().filter_map(Weak::upgrade).collect()
        };
        if grants.is_empty() {
            return seen;
        }
        let generation = ctx.bus.generations.current(AUTH).await;
        let moved = truth_moved || generation.is_none() || generation != seen;
        let now = crate::storage::now();
        let mut checked: HashMap<String, ServiceResult<Principal>> = HashMap::new();
        for grant in grants {
            if grant.reason().is_some() || grant.expire_if_due(now) || !moved {
                continue;
            }
            let Some(credential) = grant.credential() else {
                continue;
            };
            if !checked.contains_key(&credential) {
                let outcome = authenticate(ctx, tenancy, &credential).await;
                checked.insert(credential.clone(), outcome);
            }
            grant.settle(&checked[&credential]);
        }
        generation
    }
}
