//! Who is calling and what they may do. A bearer token is either the bootstrap admin
//! token (`RUSHES_ADMIN_TOKEN`) or a session / personal API token of a user, stored as a
//! SHA-256 digest. Every route asks the one [`Caller`] for permission: admin-only
//! routers through [`require_admin`], production-scoped actions through
//! [`Caller::require`], lists through [`Caller::scope`].

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a role may grant. `view` is also granted by a group's access to a production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    View,
    DownloadOriginals,
    Scan,
    Transcode,
    Transcribe,
    EditMetadata,
    ManageTags,
    ManageUsers,
    /// Make public share links to the production's clips and review files.
    Share,
    /// Administer the production: see its members, give and take their roles on it.
    Administer,
}

impl Policy {
    pub const ALL: [Policy; 10] = [
        Self::View,
        Self::DownloadOriginals,
        Self::Scan,
        Self::Transcode,
        Self::Transcribe,
        Self::EditMetadata,
        Self::ManageTags,
        Self::ManageUsers,
        Self::Share,
        Self::Administer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::DownloadOriginals => "download_originals",
            Self::Scan => "scan",
            Self::Transcode => "transcode",
            Self::Transcribe => "transcribe",
            Self::EditMetadata => "edit_metadata",
            Self::ManageTags => "manage_tags",
            Self::ManageUsers => "manage_users",
            Self::Share => "share",
            Self::Administer => "administer",
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Recorded as `requested_by` and `actor` on what the caller does.
    pub name: String,
    /// `None` for the bootstrap admin token.
    pub user_id: Option<Uuid>,
    /// Admin flag or membership of `hub`; never inherited from an impersonator.
    pub is_admin: bool,
    /// The admin acting as this user, when impersonating.
    pub impersonator_id: Option<Uuid>,
    /// The token used, so that logout can revoke it.
    pub token_id: Option<Uuid>,
    /// Groups the audit entries of one request.
    pub request_id: Uuid,
}

impl Caller {
    /// The caller as the audit trail names them.
    pub fn actor(&self) -> rushes_common::audit::Actor {
        rushes_common::audit::Actor {
            request_id: self.request_id,
            user_id: self.user_id,
            name: self.name.clone(),
            impersonator_id: self.impersonator_id,
            kind: if self.user_id.is_some() {
                rushes_common::audit::ActorKind::User
            } else {
                rushes_common::audit::ActorKind::BootstrapToken
            },
        }
    }

    /// The caller as an account job's requester (re-checked by the worker).
    pub fn requester(&self) -> rushes_common::job::accounts::Requester {
        use rushes_common::job::accounts::Requester;
        match self.user_id {
            Some(id) => Requester::User(id),
            None => Requester::BootstrapAdmin,
        }
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("admins only".into()))
        }
    }

    /// The user whose grants filter lists, or `None` when the caller sees everything.
    pub fn scope(&self) -> Option<Uuid> {
        if self.is_admin { None } else { self.user_id }
    }

    /// The caller's policies on a production (`None`: global ones).
    pub async fn policies(&self, state: &AppState, production: Option<Uuid>) -> ApiResult<Vec<String>> {
        if self.is_admin {
            return Ok(Policy::ALL.iter().map(|p| p.as_str().to_owned()).collect());
        }
        let Some(user) = self.user_id else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_scalar("SELECT user_policies($1, $2)")
            .bind(user)
            .bind(production)
            .fetch_one(&state.db)
            .await?)
    }

    /// Allows `policy` on a production the caller can see; a production they cannot
    /// see is answered as missing (its existence is not revealed).
    pub async fn require(&self, state: &AppState, policy: Policy, production: Uuid) -> ApiResult<()> {
        self.require_held(state, policy, production).await.map(drop)
    }

    /// [`Caller::require`], answering every policy the caller holds there.
    pub async fn require_held(&self, state: &AppState, policy: Policy, production: Uuid) -> ApiResult<Vec<String>> {
        let held = self.policies(state, Some(production)).await?;
        if !held.iter().any(|p| p == Policy::View.as_str()) {
            return Err(ApiError::NotFound(format!("no production {production}")));
        }
        if held.iter().any(|p| p == policy.as_str()) {
            Ok(held)
        } else {
            Err(ApiError::Forbidden(format!(
                "needs the `{}` policy on this production",
                policy.as_str()
            )))
        }
    }

    /// Allows a change to user `target`'s account (its credentials, flags, tokens,
    /// deletion) by someone who is not the user: `manage_users`, and an admin when the
    /// target is an admin (the flag or `hub`).
    pub async fn require_may_change_user(&self, state: &AppState, target: Uuid) -> ApiResult<()> {
        if self.is_admin {
            return Ok(());
        }
        self.require_global(state, Policy::ManageUsers).await?;
        let target_is_admin: bool = sqlx::query_scalar("SELECT user_is_admin($1)")
            .bind(target)
            .fetch_one(&state.db)
            .await?;
        if target_is_admin {
            return Err(ApiError::Forbidden("only an admin may change an admin account".into()));
        }
        Ok(())
    }

    /// Allows adding someone to each of `groups`: admins may add to any group, others
    /// not to `hub` nor to a group granting more than they hold themselves.
    pub async fn require_may_grant(&self, state: &AppState, groups: &[Uuid]) -> ApiResult<()> {
        if self.is_admin || groups.is_empty() {
            return Ok(());
        }
        let refused: Vec<String> = sqlx::query_scalar(
            "SELECT g.name FROM groups g WHERE g.id = ANY($2) AND NOT may_grant_group($1, g.id) ORDER BY g.name",
        )
        .bind(self.user_id)
        .bind(groups)
        .fetch_all(&state.db)
        .await?;
        if refused.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only an admin may add users to {}: it grants more than you hold",
                refused
                    .iter()
                    .map(|g| format!("group `{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// Refuses credential changes (password, email, new tokens) in an impersonation
    /// session: the impersonated user's credentials are theirs alone.
    pub fn require_not_impersonating(&self, what: &str) -> ApiResult<()> {
        if self.impersonator_id.is_some() {
            return Err(ApiError::Forbidden(format!(
                "{what} is not allowed while impersonating"
            )));
        }
        Ok(())
    }

    /// Allows a global policy (admins hold them all).
    pub async fn require_global(&self, state: &AppState, policy: Policy) -> ApiResult<()> {
        if self.policies(state, None).await?.iter().any(|p| p == policy.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("needs the `{}` policy", policy.as_str())))
        }
    }
}

pub use rushes_common::tokens::{new_token, token_digest};

#[derive(sqlx::FromRow)]
struct TokenOwner {
    token_id: Uuid,
    user_id: Uuid,
    username: String,
    is_admin: bool,
    impersonator_id: Option<Uuid>,
}

/// Rejects requests without a valid bearer token; adds the [`Caller`] to the others.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let request_id = Uuid::now_v7();
    let caller = if bool::from(presented.as_bytes().ct_eq(state.admin_token.expose().as_bytes())) {
        Caller {
            name: "admin".to_owned(),
            user_id: None,
            is_admin: true,
            impersonator_id: None,
            token_id: None,
            request_id,
        }
    } else {
        // Last-used and last-seen stamps are refreshed at most once a minute, so polling
        // clients do not turn every read into two writes.
        let owner: TokenOwner = sqlx::query_as(
            "WITH t AS ( \
                 SELECT id, user_id, impersonator_id, last_used_at FROM tokens \
                 WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) \
                   AND (impersonator_id IS NULL OR ( \
                        user_is_admin(impersonator_id) AND EXISTS ( \
                            SELECT 1 FROM users i WHERE i.id = impersonator_id AND i.active AND i.deleted_at IS NULL)))), \
             u AS ( \
                 SELECT users.id, users.username, users.is_admin, users.last_seen_at FROM users JOIN t ON t.user_id = users.id \
                 WHERE users.active AND users.deleted_at IS NULL), \
             touch_token AS ( \
                 UPDATE tokens SET last_used_at = now() FROM t, u WHERE tokens.id = t.id \
                    AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute') RETURNING 1), \
             touch_user AS ( \
                 UPDATE users SET last_seen_at = now() FROM u WHERE users.id = u.id \
                    AND (u.last_seen_at IS NULL OR u.last_seen_at < now() - interval '1 minute') RETURNING 1) \
             SELECT t.id AS token_id, u.id AS user_id, u.username, \
                    user_is_admin(u.id) AS is_admin, \
                    t.impersonator_id \
             FROM t JOIN u ON u.id = t.user_id",
        )
        .bind(token_digest(presented))
        .fetch_optional(&state.db)
        .await?
        .ok_or(ApiError::Unauthorized)?;
        Caller {
            name: owner.username,
            user_id: Some(owner.user_id),
            is_admin: owner.is_admin,
            impersonator_id: owner.impersonator_id,
            token_id: Some(owner.token_id),
            request_id,
        }
    };
    let impersonation = caller.impersonator_id.zip(caller.user_id);
    let path = match request.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => original.path().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let method = request.method().to_string();
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    if let Some((impersonator, user)) = impersonation {
        crate::audit::impersonated_request(&state, impersonator, user, &method, &path, response.status().as_u16())
            .await;
    }
    Ok(response)
}

/// Route layer of the admin-only routers (jobs, queues, workers, schedules, …).
pub async fn require_admin(request: Request, next: Next) -> Result<Response, ApiError> {
    match request.extensions().get::<Caller>() {
        Some(caller) => caller.require_admin()?,
        None => return Err(ApiError::Unauthorized),
    }
    Ok(next.run(request).await)
}

/// Argon2id hash of a password, in PHC string form (on the bounded pool of [`crate::passwords`]).
pub async fn hash_password(password: String) -> ApiResult<String> {
    crate::passwords::hash(password).await
}

/// Whether `password` matches a stored PHC hash (false for a malformed hash); 503 when
/// too many checks wait already.
pub async fn verify_password(password: String, hash: String) -> ApiResult<bool> {
    crate::passwords::verify(password, hash).await
}
