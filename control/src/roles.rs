//! Where a role holds: the scope of an assignment to a group (`group_roles`) or to a
//! user directly (`user_roles`), checked once for both.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A role's scope: `global` (no id), or one base production or production.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default = "global")]
    pub scope_type: String,
    pub scope_id: Option<Uuid>,
}

/// The default scope type.
pub fn global() -> String {
    "global".to_owned()
}

impl Scope {
    pub fn production(id: Uuid) -> Self {
        Self {
            scope_type: "production".into(),
            scope_id: Some(id),
        }
    }

    /// The production this scope names, if it names one.
    pub fn production_id(&self) -> Option<Uuid> {
        if self.scope_type == "production" {
            self.scope_id
        } else {
            None
        }
    }

    /// Checks the type and that the id names an object of that type (`422` otherwise).
    pub async fn validate(&self, state: &AppState) -> ApiResult<()> {
        let table = match (self.scope_type.as_str(), self.scope_id) {
            ("global", None) => return Ok(()),
            ("production", Some(_)) => "productions",
            ("base_production", Some(_)) => "base_productions",
            _ => {
                return Err(ApiError::Unprocessable(
                    "scope_type: `global` (no scope_id), or `base_production` / `production` with a scope_id".into(),
                ));
            }
        };
        let exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
        )))
        .bind(self.scope_id)
        .fetch_one(&state.db)
        .await?;
        if exists {
            Ok(())
        } else {
            Err(ApiError::Unprocessable(format!(
                "scope_id: there is no {} {} (scope_type `{}`)",
                self.scope_type.replace('_', " "),
                self.scope_id.map(|id| id.to_string()).unwrap_or_default(),
                self.scope_type
            )))
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.scope_id {
            Some(id) => write!(f, "{} {id}", self.scope_type),
            None => f.write_str(&self.scope_type),
        }
    }
}

/// A role as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    pub policies: Vec<String>,
    pub builtin: bool,
}

/// The role `id`, its row locked until the end of the caller's transaction (when in one).
pub async fn lookup(executor: impl sqlx::PgExecutor<'_>, id: Uuid) -> ApiResult<Option<Role>> {
    Ok(
        sqlx::query_as("SELECT id, name, policies, builtin FROM roles WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(executor)
            .await?,
    )
}

/// The role `id`, or `422` naming `field` when there is none.
pub async fn find(state: &AppState, id: Uuid, field: &str) -> ApiResult<Role> {
    lookup(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::Unprocessable(format!("{field}: there is no role {id}")))
}
