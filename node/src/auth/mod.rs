//! Authorization as Temporal's server does it: a claim mapper turns the caller's
//! `authorization` header into [`Claims`] (roles per namespace, and cluster-wide), and an
//! authorizer decides each RPC from the roles its method needs ([`rules`]) in the namespace
//! its request names. Off unless the node is given a claim mapper (`--auth-jwks`).
//!
//! Invariants:
//! - A denied call is answered `PERMISSION_DENIED` ("Request unauthorized.", with a
//!   `PermissionDeniedFailure`) before its handler runs, so it changes nothing. The check is
//!   at the RPC edge of the client port (`frontend/edge.rs`), over the request's own bytes:
//!   no handler can forget it.
//! - Calls between nodes (the peer port) are not authorized again: the node a client called
//!   did, and the peer port admits only the cluster's nodes.
//! - A header that does not map to claims (bad signature, expired, unknown key) is denied
//!   like no roles at all; why is logged, not told to the caller.

mod jwt;
mod request;
mod rules;

use std::{collections::HashMap, sync::Arc};

pub use jwt::JwtClaimMapper;
pub use request::namespace_of;
pub use rules::{Access, Rule, rule};

/// Roles as Temporal's permissions name them; a caller's roles are a set of these bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const WORKER: Roles = Roles(1);
    pub const READER: Roles = Roles(2);
    pub const WRITER: Roles = Roles(4);
    pub const ADMIN: Roles = Roles(8);

    /// `read`, `write`, `worker` or `admin` (any case); anything else grants nothing.
    pub fn of_permission(role: &str) -> Roles {
        match role.to_ascii_lowercase().as_str() {
            "worker" => Roles::WORKER,
            "read" => Roles::READER,
            "write" => Roles::WRITER,
            "admin" => Roles::ADMIN,
            _ => Roles::default(),
        }
    }

    pub fn union(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }

    /// Whether these roles allow a call needing `access`. As Temporal's default authorizer, a
    /// higher role includes the lower ones (admin > write > read). The worker role runs a
    /// worker: its calls (polls, task completions, heartbeats) and the reads an SDK worker
    /// makes (DescribeNamespace at start, history pages), but no start, signal or
    /// termination. (Temporal's own default authorizer asks write of worker calls, which
    /// leaves its worker role without use.)
    pub fn allow(self, access: Access) -> bool {
        let worker = self.0 & Roles::WORKER.0 != 0;
        match access {
            Access::Read => worker || self.0 >= Roles::READER.0,
            Access::Worker => worker || self.0 >= Roles::WRITER.0,
            Access::Write => self.0 >= Roles::WRITER.0,
            Access::Admin => self.0 >= Roles::ADMIN.0,
        }
    }
}

/// What a caller may do, as its credentials say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    /// Roles in every namespace and over the cluster (`system:<role>`).
    pub system: Roles,
    pub namespaces: HashMap<String, Roles>,
}

impl Claims {
    /// Adds one `"<namespace>:<role>"` permission (`system` names the whole cluster).
    pub fn grant(&mut self, permission: &str) -> bool {
        let Some((scope, role)) = permission.split_once(':') else {
            return false;
        };
        let roles = Roles::of_permission(role);
        if scope == "system" {
            self.system = self.system.union(roles);
        } else {
            let held = self.namespaces.entry(scope.to_string()).or_default();
            *held = held.union(roles);
        }
        true
    }

    fn roles_in(&self, namespace: &str) -> Roles {
        self.namespaces
            .get(namespace)
            .map_or(self.system, |r| r.union(self.system))
    }
}

/// Turns a call's `authorization` header (absent: `None`) into claims. An operator with
/// another identity provider implements this and hands it to [`Authority::new`].
pub trait ClaimMapper: Send + Sync + 'static {
    fn claims(&self, authorization: Option<&str>) -> Result<Claims, String>;
}

/// Why a call is refused (logged; the caller only learns that it was).
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("credentials not accepted: {0}")]
    Credentials(String),
    #[error("{method} is not a call Dura authorizes")]
    UnknownMethod { method: String },
    #[error("{subject:?} lacks {access:?} access{}", namespace.as_deref().map(|n| format!(" to namespace {n:?}")).unwrap_or_default())]
    Missing {
        subject: String,
        access: Access,
        namespace: Option<String>,
    },
}

/// The node's claim mapper and Temporal's default authorizer.
#[derive(Clone)]
pub struct Authority {
    mapper: Arc<dyn ClaimMapper>,
}

impl Authority {
    pub fn new(mapper: Arc<dyn ClaimMapper>) -> Self {
        Authority { mapper }
    }

    /// Decides a call to `method` (`/package.Service/Method`) about `namespace` (what its
    /// request names; `None` for a request without one).
    pub fn decide(
        &self,
        method: &str,
        authorization: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(), Denied> {
        let rule = rule(method).ok_or_else(|| Denied::UnknownMethod {
            method: method.to_string(),
        })?;
        let (access, cluster_wide) = match rule {
            Rule::Open => return Ok(()),
            Rule::Cluster(access) => (access, true),
            Rule::Namespace(access) => (access, false),
        };
        let claims = self
            .mapper
            .claims(authorization)
            .map_err(Denied::Credentials)?;
        let roles = match cluster_wide {
            true => claims.system,
            false => claims.roles_in(namespace.unwrap_or_default()),
        };
        if roles.allow(access) {
            return Ok(());
        }
        Err(Denied::Missing {
            subject: claims.subject,
            access,
            namespace: (!cluster_wide).then(|| namespace.unwrap_or_default().to_string()),
        })
    }
}

#[cfg(test)]
mod tests;
