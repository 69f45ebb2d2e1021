//! sipmeter storage: the schema, its migrations and every query the control plane runs.
//!
//! One codebase serves SQLite (the embedded default, WAL mode) and PostgreSQL through sqlx's
//! `Any` driver. Why `Any` rather than a `Store` trait with two implementations: every query
//! here is portable DML (`$n` placeholders, `RETURNING`, `ON CONFLICT`), so one implementation
//! keeps the two backends from drifting apart; the DDL differs and lives in two migration
//! folders (`migrations/sqlite`, `migrations/postgres`). The store test suite runs on both.
//!
//! Portability rules the schema follows (see `dependencies.md`): flags are `INTEGER` 0/1, times
//! are `BIGINT` unix milliseconds, enums are lower-case `TEXT`, ids are 64-bit integers.

mod model;
pub mod rotation;

/// `SELECT <every registrar column> FROM registrars <tail>` as a literal (sqlx 0.9 wants
/// literal SQL).
macro_rules! registrar_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, project_id, kind, name, domain, port, transport, outbound_proxy, tls_verify, ",
            "tls_ca_pem, tls_cert_pem, tls_key_pem, created_at, updated_at FROM registrars ",
            $tail
        )
    };
}

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use model::{
    AccountPool, ApiKey, Invitation, Member, Organization, Project, Registrar, RegistrarInput,
    RegistrarKind, Role, Session, SipAccount, SipAccountInput, TlsVerify, Transport, User,
    registration_uri,
};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a query.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The URL names a database the store does not support.
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// A unique value is already taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A referenced row does not exist (or belongs elsewhere).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A pool cannot supply the accounts a run needs.
    #[error(transparent)]
    NotEnoughAccounts(#[from] rotation::NotEnoughAccounts),
    /// A stored value could not be read back (a column holds an unknown enum value).
    #[error("invalid value {value:?} in column {column}")]
    InvalidValue {
        /// The column.
        column: &'static str,
        /// What it held.
        value: String,
    },
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// One migration: a version, a name and its DDL for each backend.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "sip_accounts",
        sqlite: include_str!("../migrations/sqlite/0002_sip_accounts.sql"),
        postgres: include_str!("../migrations/postgres/0002_sip_accounts.sql"),
    },
    Migration {
        version: 3,
        name: "access",
        sqlite: include_str!("../migrations/sqlite/0003_access.sql"),
        postgres: include_str!("../migrations/postgres/0003_access.sql"),
    },
    Migration {
        version: 4,
        name: "pools",
        sqlite: include_str!("../migrations/sqlite/0004_pools.sql"),
        postgres: include_str!("../migrations/postgres/0004_pools.sql"),
    },
];

/// The current time in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Turns a display name into a URL slug: lower-case ASCII letters, digits and single dashes.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug.truncate(48);
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        slug.push_str("project");
    }
    slug
}

/// What the first start creates: the Owner, their organization and a "Demo" project.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The Owner.
    pub user: User,
    /// The organization.
    pub org: Organization,
    /// The "Demo" project, holding the built-in registrar.
    pub demo: Project,
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`) and runs the migrations.
    ///
    /// SQLite databases are switched to WAL mode with foreign keys on.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let mut options = AnyPoolOptions::new().max_connections(8);
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Per-connection settings; WAL is persistent but setting it again is free.
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Applies every migration not applied yet, each in its own transaction.
    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS sipmeter_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for m in MIGRATIONS {
            let done: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM sipmeter_migrations WHERE version = $1")
                    .bind(m.version)
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("n")?;
            if done > 0 {
                continue;
            }
            let ddl = match self.backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            let mut tx = self.pool.begin().await?;
            for stmt in split_statements(ddl) {
                // Audited: the statements come from the migration files compiled into the binary.
                sqlx::query(sqlx::AssertSqlSafe(stmt))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO sipmeter_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The applied migration versions, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT version FROM sipmeter_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("version").map_err(Into::into))
            .collect()
    }

    // ---------------------------------------------------------------- users and orgs

    /// How many users exist (0 means the first-start setup has not run).
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// First start: creates the Owner, the organization, and a "Demo" project containing the
    /// built-in registrar, all in one transaction.
    pub async fn bootstrap(
        &self,
        email: &str,
        name: &str,
        password_hash: &str,
        org_name: &str,
    ) -> Result<Bootstrap> {
        let email = email.trim().to_ascii_lowercase();
        let email = email.as_str();
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let user_id = insert_user(&mut tx, email, name, password_hash, now).await?;
        let org_slug = slugify(org_name);
        let org_id: i64 = sqlx::query(
            "INSERT INTO organizations (name, slug, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(org_name)
        .bind(&org_slug)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, "organization"))?
        .try_get("id")?;
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(Role::Owner.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let project_id: i64 = sqlx::query(
            "INSERT INTO projects (org_id, name, slug, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(org_id)
        .bind("Demo")
        .bind("demo")
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        insert_registrar(
            &mut tx,
            project_id,
            RegistrarKind::Builtin,
            &RegistrarInput::builtin(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Bootstrap {
            user: User {
                id: user_id,
                email: email.to_string(),
                name: name.to_string(),
                password_hash: password_hash.to_string(),
                created_at: now,
            },
            org: Organization {
                id: org_id,
                name: org_name.to_string(),
                slug: org_slug,
                created_at: now,
            },
            demo: Project {
                id: project_id,
                org_id,
                name: "Demo".to_string(),
                slug: "demo".to_string(),
                created_at: now,
            },
        })
    }

    /// Creates a user (email must be unique; compare lower-cased).
    pub async fn create_user(&self, email: &str, name: &str, password_hash: &str) -> Result<User> {
        let email = email.trim().to_ascii_lowercase();
        let email = email.as_str();
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let id = insert_user(&mut tx, email, name, password_hash, now).await?;
        tx.commit().await?;
        Ok(User {
            id,
            email: email.to_string(),
            name: name.to_string(),
            password_hash: password_hash.to_string(),
            created_at: now,
        })
    }

    /// Looks a user up by email (case-insensitive: emails are stored lower-cased).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, email, name, password_hash, created_at FROM users WHERE email = $1",
        )
        .bind(email.trim().to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Looks a user up by id.
    pub async fn user(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, email, name, password_hash, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Creates an organization (its slug is derived from the name and made unique).
    pub async fn create_organization(&self, name: &str) -> Result<Organization> {
        let base = slugify(name);
        let taken: Vec<String> = sqlx::query("SELECT slug FROM organizations")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("slug"))
            .collect::<Result<_, _>>()?;
        let slug = unique_slug(&base, &taken);
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO organizations (name, slug, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(&slug)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, "organization"))?
        .try_get("id")?;
        Ok(Organization {
            id,
            name: name.to_string(),
            slug,
            created_at: now,
        })
    }

    /// An organization by id.
    pub async fn organization(&self, id: i64) -> Result<Option<Organization>> {
        let row = sqlx::query("SELECT id, name, slug, created_at FROM organizations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Adds a user to an organization with a role, or changes their role.
    pub async fn set_member(&self, org_id: i64, user_id: i64, role: Role) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The organizations a user belongs to, with their role in each, oldest membership first.
    pub async fn memberships(&self, user_id: i64) -> Result<Vec<(Organization, Role)>> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.slug, o.created_at, m.role FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY m.created_at, o.id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    org_from_row(r)?,
                    Role::parse_column(&r.try_get::<String, _>("role")?)?,
                ))
            })
            .collect()
    }

    /// A user's role in an organization, if they are a member.
    pub async fn member_role(&self, org_id: i64, user_id: i64) -> Result<Option<Role>> {
        let row = sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Role::parse_column(&r.try_get::<String, _>("role")?))
            .transpose()
    }

    /// The members of an organization.
    pub async fn members(&self, org_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, m.role, m.all_projects FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.email",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    user_id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    name: r.try_get("name")?,
                    role: Role::parse_column(&r.try_get::<String, _>("role")?)?,
                    all_projects: r.try_get::<i64, _>("all_projects")? != 0,
                })
            })
            .collect()
    }

    /// Whether a member sees every project of the organization (true) or only the projects
    /// with a per-project role.
    pub async fn set_member_scope(
        &self,
        org_id: i64,
        user_id: i64,
        all_projects: bool,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE memberships SET all_projects = $1 WHERE org_id = $2 AND user_id = $3",
        )
        .bind(i64::from(all_projects))
        .bind(org_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Removes a member and their per-project roles in that organization.
    pub async fn remove_member(&self, org_id: i64, user_id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM project_roles WHERE user_id = $1 AND project_id IN \
             (SELECT id FROM projects WHERE org_id = $2)",
        )
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// A user's effective role in a project: the per-project override when there is one, else
    /// the organization role when the member sees all projects (Admins and Owners always do);
    /// None when the user has no access.
    pub async fn project_role(&self, project_id: i64, user_id: i64) -> Result<Option<Role>> {
        let row = sqlx::query(
            "SELECT m.role AS org_role, m.all_projects, pr.role AS project_role FROM projects p \
             JOIN memberships m ON m.org_id = p.org_id AND m.user_id = $2 \
             LEFT JOIN project_roles pr ON pr.project_id = p.id AND pr.user_id = $2 \
             WHERE p.id = $1",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let org_role = Role::parse_column(&r.try_get::<String, _>("org_role")?)?;
        let all: i64 = r.try_get("all_projects")?;
        let over: Option<String> = r.try_get("project_role")?;
        Ok(match over {
            Some(o) => Some(Role::parse_column(&o)?),
            None if all != 0 || org_role >= Role::Admin => Some(org_role),
            None => None,
        })
    }

    /// The projects of an organization a user can open, by name.
    pub async fn accessible_projects(&self, org_id: i64, user_id: i64) -> Result<Vec<Project>> {
        let rows = sqlx::query(
            "SELECT p.id, p.org_id, p.name, p.slug, p.created_at FROM projects p \
             JOIN memberships m ON m.org_id = p.org_id AND m.user_id = $2 \
             LEFT JOIN project_roles pr ON pr.project_id = p.id AND pr.user_id = $2 \
             WHERE p.org_id = $1 AND (m.all_projects <> 0 OR m.role IN ('admin', 'owner') OR pr.role IS NOT NULL) \
             ORDER BY p.name, p.id",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// Sets (Some) or removes (None) a user's role override in a project.
    pub async fn set_project_role(
        &self,
        project_id: i64,
        user_id: i64,
        role: Option<Role>,
    ) -> Result<()> {
        match role {
            Some(role) => {
                sqlx::query(
                    "INSERT INTO project_roles (project_id, user_id, role) VALUES ($1, $2, $3) \
                     ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .bind(project_id)
                .bind(user_id)
                .bind(role.as_str())
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM project_roles WHERE project_id = $1 AND user_id = $2")
                    .bind(project_id)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The per-project role overrides of a project: (user id, role).
    pub async fn project_overrides(&self, project_id: i64) -> Result<Vec<(i64, Role)>> {
        let rows = sqlx::query(
            "SELECT user_id, role FROM project_roles WHERE project_id = $1 ORDER BY user_id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("user_id")?,
                    Role::parse_column(&r.try_get::<String, _>("role")?)?,
                ))
            })
            .collect()
    }

    // ---------------------------------------------------------------- invitations

    /// Stores an invitation (the token only as its hash). With `project_id`, the invitee gets
    /// `role` in that project only (`all_projects` false).
    #[allow(clippy::too_many_arguments)] // one row's columns
    pub async fn create_invitation(
        &self,
        org_id: i64,
        email: &str,
        role: Role,
        project_id: Option<i64>,
        token_hash: &str,
        created_by: i64,
        expires_at: i64,
    ) -> Result<Invitation> {
        let email = email.trim().to_ascii_lowercase();
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO invitations (org_id, email, role, all_projects, project_id, token_hash, created_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(org_id)
        .bind(&email)
        .bind(role.as_str())
        .bind(i64::from(project_id.is_none()))
        .bind(project_id)
        .bind(token_hash)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, "invitation"))?
        .try_get("id")?;
        Ok(Invitation {
            id,
            org_id,
            email,
            role,
            project_id,
            created_by,
            created_at: now,
            expires_at,
            accepted_at: None,
        })
    }

    /// The open (unaccepted, unexpired at `now`) invitation with this token hash.
    pub async fn open_invitation(&self, token_hash: &str, now: i64) -> Result<Option<Invitation>> {
        let row = sqlx::query(
            "SELECT id, org_id, email, role, project_id, created_by, created_at, expires_at, accepted_at \
             FROM invitations WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invitation_from_row).transpose()
    }

    /// The open invitations of an organization, newest first.
    pub async fn invitations(&self, org_id: i64, now: i64) -> Result<Vec<Invitation>> {
        let rows = sqlx::query(
            "SELECT id, org_id, email, role, project_id, created_by, created_at, expires_at, accepted_at \
             FROM invitations WHERE org_id = $1 AND accepted_at IS NULL AND expires_at > $2 ORDER BY id DESC",
        )
        .bind(org_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invitation_from_row).collect()
    }

    /// Revokes an open invitation; false when there is no such open invitation.
    pub async fn revoke_invitation(&self, org_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM invitations WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL",
        )
        .bind(org_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Accepts an invitation once: the user (existing, or created here from `new_user` =
    /// (name, password hash) with the invitation's email) joins the organization with its
    /// role and scope. Returns the user id, or None when the invitation was already used.
    pub async fn accept_invitation(
        &self,
        inv: &Invitation,
        existing_user: Option<i64>,
        new_user: Option<(&str, &str)>,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let used = sqlx::query(
            "UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL",
        )
        .bind(now)
        .bind(inv.id)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() == 0 {
            return Ok(None);
        }
        let user_id = match (existing_user, new_user) {
            (Some(id), _) => id,
            (None, Some((name, hash))) => insert_user(&mut tx, &inv.email, name, hash, now).await?,
            (None, None) => return Err(StoreError::Conflict("user")),
        };
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at, all_projects) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, all_projects = excluded.all_projects",
        )
        .bind(inv.org_id)
        .bind(user_id)
        .bind(inv.role.as_str())
        .bind(now)
        .bind(i64::from(inv.project_id.is_none()))
        .execute(&mut *tx)
        .await?;
        if let Some(pid) = inv.project_id {
            sqlx::query(
                "INSERT INTO project_roles (project_id, user_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(pid)
            .bind(user_id)
            .bind(inv.role.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(user_id))
    }

    // ---------------------------------------------------------------- projects

    /// Creates a project; its slug is generated from the name, unique in the organization,
    /// and never changes afterwards.
    pub async fn create_project(&self, org_id: i64, name: &str) -> Result<Project> {
        let base = slugify(name);
        let taken: Vec<String> = sqlx::query("SELECT slug FROM projects WHERE org_id = $1")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("slug"))
            .collect::<Result<_, _>>()?;
        let slug = unique_slug(&base, &taken);
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO projects (org_id, name, slug, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(org_id)
        .bind(name)
        .bind(&slug)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, "project"))?
        .try_get("id")?;
        Ok(Project {
            id,
            org_id,
            name: name.to_string(),
            slug,
            created_at: now,
        })
    }

    /// Renames a project (the slug stays).
    pub async fn rename_project(&self, id: i64, name: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The projects of an organization, by name.
    pub async fn projects(&self, org_id: i64) -> Result<Vec<Project>> {
        let rows = sqlx::query(
            "SELECT id, org_id, name, slug, created_at FROM projects WHERE org_id = $1 ORDER BY name, id",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// A project by id.
    pub async fn project(&self, id: i64) -> Result<Option<Project>> {
        let row =
            sqlx::query("SELECT id, org_id, name, slug, created_at FROM projects WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// A project by its slug within an organization.
    pub async fn project_by_slug(&self, org_id: i64, slug: &str) -> Result<Option<Project>> {
        let row = sqlx::query(
            "SELECT id, org_id, name, slug, created_at FROM projects WHERE org_id = $1 AND slug = $2",
        )
        .bind(org_id)
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    // ---------------------------------------------------------------- sessions

    /// Stores a session (the token itself is never stored, only its hash).
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session with this token hash at time `now` (unix ms), if any.
    pub async fn session(&self, token_hash: &str, now: i64) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT user_id, csrf_token, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                user_id: r.try_get("user_id")?,
                csrf_token: r.try_get("csrf_token")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Deletes a session (logout).
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes sessions that expired before `now`; returns how many.
    pub async fn purge_sessions(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    // ---------------------------------------------------------------- API keys

    /// Stores an API key (hash only) scoped to a project and carrying `role`.
    pub async fn create_api_key(
        &self,
        project_id: i64,
        name: &str,
        prefix: &str,
        key_hash: &str,
        role: Role,
        created_by: i64,
    ) -> Result<ApiKey> {
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO api_keys (project_id, name, prefix, key_hash, role, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(project_id)
        .bind(name)
        .bind(prefix)
        .bind(key_hash)
        .bind(role.as_str())
        .bind(created_by)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, "api key"))?
        .try_get("id")?;
        Ok(ApiKey {
            id,
            project_id,
            name: name.to_string(),
            prefix: prefix.to_string(),
            role,
            created_by,
            created_at: now,
            revoked_at: None,
        })
    }

    /// The unrevoked API key with this hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, project_id, name, prefix, role, created_by, created_at, revoked_at FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    /// The API keys of a project (revoked ones included), newest first.
    pub async fn api_keys(&self, project_id: i64) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, project_id, name, prefix, role, created_by, created_at, revoked_at FROM api_keys \
             WHERE project_id = $1 ORDER BY id DESC",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    /// Revokes a project's API key; false when there is no such unrevoked key.
    pub async fn revoke_api_key(&self, project_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE project_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(project_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- registrars

    /// Creates a custom registrar in a project (the input is validated by the caller).
    pub async fn create_registrar(
        &self,
        project_id: i64,
        input: &RegistrarInput,
    ) -> Result<Registrar> {
        let mut tx = self.pool.begin().await?;
        let id =
            insert_registrar(&mut tx, project_id, RegistrarKind::Custom, input, now_ms()).await?;
        tx.commit().await?;
        self.registrar(project_id, id)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// The registrars of a project, by name.
    pub async fn registrars(&self, project_id: i64) -> Result<Vec<Registrar>> {
        let rows = sqlx::query(registrar_select!("WHERE project_id = $1 ORDER BY name, id"))
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(registrar_from_row).collect()
    }

    /// A registrar of a project by id (None when it belongs to another project).
    pub async fn registrar(&self, project_id: i64, id: i64) -> Result<Option<Registrar>> {
        let row = sqlx::query(registrar_select!("WHERE project_id = $1 AND id = $2"))
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(registrar_from_row).transpose()
    }

    /// Replaces a registrar's configuration; None when there is no such registrar.
    pub async fn update_registrar(
        &self,
        project_id: i64,
        id: i64,
        input: &RegistrarInput,
    ) -> Result<Option<Registrar>> {
        let r = sqlx::query(
            "UPDATE registrars SET name = $1, domain = $2, port = $3, transport = $4, outbound_proxy = $5, \
             tls_verify = $6, tls_ca_pem = $7, tls_cert_pem = $8, tls_key_pem = $9, updated_at = $10 \
             WHERE project_id = $11 AND id = $12",
        )
        .bind(&input.name)
        .bind(&input.domain)
        .bind(input.port.map(i64::from))
        .bind(input.transport.as_str())
        .bind(input.outbound_proxy.as_deref())
        .bind(input.tls_verify.as_str())
        .bind(input.tls_ca_pem.as_deref())
        .bind(input.tls_cert_pem.as_deref())
        .bind(input.tls_key_pem.as_deref())
        .bind(now_ms())
        .bind(project_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.registrar(project_id, id).await
    }

    /// Deletes a registrar; false when there is no such registrar.
    pub async fn delete_registrar(&self, project_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM registrars WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- SIP accounts

    /// Adds accounts to a registrar in one transaction: all are saved, or none (a duplicate
    /// username, within the batch or with a stored account, is a [`StoreError::Conflict`]).
    pub async fn add_sip_accounts(
        &self,
        registrar_id: i64,
        accounts: &[SipAccountInput],
    ) -> Result<Vec<SipAccount>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let mut out = Vec::with_capacity(accounts.len());
        for a in accounts {
            let id: i64 = sqlx::query(
                "INSERT INTO sip_accounts (registrar_id, username, password_enc, realm, extension, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(registrar_id)
            .bind(&a.username)
            .bind(&a.password_enc)
            .bind(a.realm.as_deref())
            .bind(a.extension.as_deref())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| conflict(e, "sip account"))?
            .try_get("id")?;
            out.push(SipAccount {
                id,
                registrar_id,
                username: a.username.clone(),
                password_enc: a.password_enc.clone(),
                realm: a.realm.clone(),
                extension: a.extension.clone(),
                created_at: now,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The accounts of a registrar, by username.
    pub async fn sip_accounts(&self, registrar_id: i64) -> Result<Vec<SipAccount>> {
        let rows = sqlx::query(
            "SELECT id, registrar_id, username, password_enc, realm, extension, created_at FROM sip_accounts \
             WHERE registrar_id = $1 ORDER BY username, id",
        )
        .bind(registrar_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sip_account_from_row).collect()
    }

    /// How many accounts a registrar has.
    pub async fn count_sip_accounts(&self, registrar_id: i64) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM sip_accounts WHERE registrar_id = $1")
                .bind(registrar_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }

    /// Deletes one account of a registrar; false when there is no such account.
    pub async fn delete_sip_account(&self, registrar_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM sip_accounts WHERE registrar_id = $1 AND id = $2")
            .bind(registrar_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- account pools

    async fn fill_pool(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        registrar_id: i64,
        pool_id: i64,
        account_ids: &[i64],
    ) -> Result<()> {
        sqlx::query("DELETE FROM pool_accounts WHERE pool_id = $1")
            .bind(pool_id)
            .execute(&mut **tx)
            .await?;
        for id in account_ids {
            let r = sqlx::query(
                "INSERT INTO pool_accounts (pool_id, account_id) SELECT $1, id FROM sip_accounts \
                 WHERE id = $2 AND registrar_id = $3 ON CONFLICT (pool_id, account_id) DO NOTHING",
            )
            .bind(pool_id)
            .bind(id)
            .bind(registrar_id)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                // Either another registrar's account, a missing one, or a duplicate id.
                let exists: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM pool_accounts WHERE pool_id = $1 AND account_id = $2",
                )
                .bind(pool_id)
                .bind(id)
                .fetch_one(&mut **tx)
                .await?
                .try_get("n")?;
                if exists == 0 {
                    return Err(StoreError::NotFound("sip account"));
                }
            }
        }
        Ok(())
    }

    /// Creates a pool of a registrar's accounts (all saved, or nothing when an id is not one of
    /// the registrar's accounts).
    pub async fn create_pool(
        &self,
        registrar_id: i64,
        name: &str,
        strategy: rotation::Strategy,
        account_ids: &[i64],
    ) -> Result<AccountPool> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO account_pools (registrar_id, name, strategy, next_index, created_at) \
             VALUES ($1, $2, $3, 0, $4) RETURNING id",
        )
        .bind(registrar_id)
        .bind(name)
        .bind(strategy.as_str())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, "pool"))?
        .try_get("id")?;
        Self::fill_pool(&mut tx, registrar_id, id, account_ids).await?;
        tx.commit().await?;
        self.account_pool(registrar_id, id)
            .await?
            .ok_or(StoreError::NotFound("pool"))
    }

    /// Renames a pool, changes its strategy and replaces its accounts.
    pub async fn update_pool(
        &self,
        registrar_id: i64,
        id: i64,
        name: &str,
        strategy: rotation::Strategy,
        account_ids: &[i64],
    ) -> Result<Option<AccountPool>> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE account_pools SET name = $1, strategy = $2 WHERE registrar_id = $3 AND id = $4",
        )
        .bind(name)
        .bind(strategy.as_str())
        .bind(registrar_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "pool"))?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        Self::fill_pool(&mut tx, registrar_id, id, account_ids).await?;
        tx.commit().await?;
        self.account_pool(registrar_id, id).await
    }

    /// The pools of a registrar, by name.
    pub async fn account_pools(&self, registrar_id: i64) -> Result<Vec<AccountPool>> {
        let rows =
            sqlx::query("SELECT id FROM account_pools WHERE registrar_id = $1 ORDER BY name, id")
                .bind(registrar_id)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(p) = self.account_pool(registrar_id, r.try_get("id")?).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// One pool of a registrar, with its account ids (by username).
    pub async fn account_pool(&self, registrar_id: i64, id: i64) -> Result<Option<AccountPool>> {
        let row = sqlx::query(
            "SELECT id, registrar_id, name, strategy, next_index, created_at FROM account_pools \
             WHERE registrar_id = $1 AND id = $2",
        )
        .bind(registrar_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let strategy: String = r.try_get("strategy")?;
        let members = sqlx::query(
            "SELECT a.id FROM pool_accounts pa JOIN sip_accounts a ON a.id = pa.account_id \
             WHERE pa.pool_id = $1 ORDER BY a.username, a.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(AccountPool {
            id: r.try_get("id")?,
            registrar_id: r.try_get("registrar_id")?,
            name: r.try_get("name")?,
            strategy: rotation::Strategy::parse(&strategy).ok_or(StoreError::InvalidValue {
                column: "account_pools.strategy",
                value: strategy.clone(),
            })?,
            next_index: r.try_get("next_index")?,
            created_at: r.try_get("created_at")?,
            account_ids: members
                .iter()
                .map(|m| m.try_get("id"))
                .collect::<Result<_, _>>()?,
        }))
    }

    /// Deletes a pool (its accounts stay).
    pub async fn delete_pool(&self, registrar_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM account_pools WHERE registrar_id = $1 AND id = $2")
            .bind(registrar_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Draws `n` distinct accounts for one run with the pool's strategy (`seed` for Random),
    /// recording their use at `now` (unix ms; least-recently-used) and the round-robin
    /// position, in one transaction. Too few accounts → [`StoreError::NotEnoughAccounts`],
    /// nothing recorded.
    pub async fn draw_accounts(
        &self,
        registrar_id: i64,
        pool_id: i64,
        n: usize,
        seed: u64,
        now: i64,
    ) -> Result<Vec<SipAccount>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT strategy, next_index FROM account_pools WHERE registrar_id = $1 AND id = $2",
        )
        .bind(registrar_id)
        .bind(pool_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("pool"))?;
        let strategy: String = row.try_get("strategy")?;
        let strategy = rotation::Strategy::parse(&strategy).ok_or(StoreError::InvalidValue {
            column: "account_pools.strategy",
            value: strategy.clone(),
        })?;
        let next_index: i64 = row.try_get("next_index")?;
        let rows = sqlx::query(
            "SELECT a.id, a.registrar_id, a.username, a.password_enc, a.realm, a.extension, a.created_at, \
             a.last_used_at FROM pool_accounts pa JOIN sip_accounts a ON a.id = pa.account_id \
             WHERE pa.pool_id = $1 ORDER BY a.username, a.id",
        )
        .bind(pool_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut accounts = Vec::with_capacity(rows.len());
        let mut candidates = Vec::with_capacity(rows.len());
        for r in &rows {
            let a = sip_account_from_row(r)?;
            candidates.push((a.id, r.try_get::<Option<i64>, _>("last_used_at")?));
            accounts.push(a);
        }
        let (ids, next) = rotation::pick(
            strategy,
            &candidates,
            n,
            usize::try_from(next_index).unwrap_or(0),
            seed,
        )?;
        for id in &ids {
            sqlx::query("UPDATE sip_accounts SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE account_pools SET next_index = $1 WHERE id = $2")
            .bind(i64::try_from(next).unwrap_or(0))
            .bind(pool_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids
            .iter()
            .filter_map(|id| accounts.iter().find(|a| a.id == *id).cloned())
            .collect())
    }
}

fn invitation_from_row(r: &AnyRow) -> Result<Invitation> {
    Ok(Invitation {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        email: r.try_get("email")?,
        role: Role::parse_column(&r.try_get::<String, _>("role")?)?,
        project_id: r.try_get("project_id")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        accepted_at: r.try_get("accepted_at")?,
    })
}

fn sip_account_from_row(r: &AnyRow) -> Result<SipAccount> {
    Ok(SipAccount {
        id: r.try_get("id")?,
        registrar_id: r.try_get("registrar_id")?,
        username: r.try_get("username")?,
        password_enc: r.try_get("password_enc")?,
        realm: r.try_get("realm")?,
        extension: r.try_get("extension")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Splits a migration file into statements: comment lines dropped first, then split on `;`
/// (the files hold no `;` inside literals).
fn split_statements(ddl: &str) -> Vec<String> {
    let code: Vec<&str> = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `base`, or `base-2`, `base-3`, … whichever is not taken.
fn unique_slug(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|s| !taken.contains(s))
        // The range is unbounded and `taken` finite, so a free slug always exists.
        .unwrap()
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
fn conflict(e: sqlx::Error, what: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(what);
    }
    StoreError::Database(e)
}

async fn insert_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    email: &str,
    name: &str,
    password_hash: &str,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO users (email, name, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(email.trim().to_ascii_lowercase())
    .bind(name)
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| conflict(e, "user"))?
    .try_get("id")?)
}

async fn insert_registrar(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project_id: i64,
    kind: RegistrarKind,
    input: &RegistrarInput,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO registrars (project_id, kind, name, domain, port, transport, outbound_proxy, \
         tls_verify, tls_ca_pem, tls_cert_pem, tls_key_pem, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(project_id)
    .bind(kind.as_str())
    .bind(&input.name)
    .bind(&input.domain)
    .bind(input.port.map(i64::from))
    .bind(input.transport.as_str())
    .bind(input.outbound_proxy.as_deref())
    .bind(input.tls_verify.as_str())
    .bind(input.tls_ca_pem.as_deref())
    .bind(input.tls_cert_pem.as_deref())
    .bind(input.tls_key_pem.as_deref())
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?)
}

fn user_from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
    })
}

fn org_from_row(r: &AnyRow) -> Result<Organization> {
    Ok(Organization {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        created_at: r.try_get("created_at")?,
    })
}

fn project_from_row(r: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        created_at: r.try_get("created_at")?,
    })
}

fn api_key_from_row(r: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        role: Role::parse_column(&r.try_get::<String, _>("role")?)?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn registrar_from_row(r: &AnyRow) -> Result<Registrar> {
    let kind: String = r.try_get("kind")?;
    let transport: String = r.try_get("transport")?;
    let verify: String = r.try_get("tls_verify")?;
    let port: Option<i64> = r.try_get("port")?;
    Ok(Registrar {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        kind: RegistrarKind::parse(&kind).ok_or(StoreError::InvalidValue {
            column: "registrars.kind",
            value: kind.clone(),
        })?,
        name: r.try_get("name")?,
        domain: r.try_get("domain")?,
        port: port
            .map(|p| {
                u16::try_from(p).map_err(|_| StoreError::InvalidValue {
                    column: "registrars.port",
                    value: p.to_string(),
                })
            })
            .transpose()?,
        transport: Transport::parse(&transport).ok_or(StoreError::InvalidValue {
            column: "registrars.transport",
            value: transport.clone(),
        })?,
        outbound_proxy: r.try_get("outbound_proxy")?,
        tls_verify: TlsVerify::parse(&verify).ok_or(StoreError::InvalidValue {
            column: "registrars.tls_verify",
            value: verify.clone(),
        })?,
        tls_ca_pem: r.try_get("tls_ca_pem")?,
        tls_cert_pem: r.try_get("tls_cert_pem")?,
        tls_key_pem: r.try_get("tls_key_pem")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Production Asterisk!"), "production-asterisk");
        assert_eq!(slugify("  --Ünïcode  -- name "), "n-code-name");
        assert_eq!(slugify("***"), "project");
        assert_eq!(
            unique_slug("demo", &["demo".into(), "demo-2".into()]),
            "demo-3"
        );
        assert_eq!(unique_slug("x", &["demo".into()]), "x");
    }

    #[test]
    fn migration_files_split_into_statements() {
        let stmts = split_statements(MIGRATIONS[0].sqlite);
        assert_eq!(stmts.len(), 8, "7 tables and 1 index");
        assert!(stmts.iter().all(|s| !s.contains("--")));
        assert_eq!(split_statements(MIGRATIONS[0].postgres).len(), 8);
        assert_eq!(split_statements(MIGRATIONS[1].sqlite).len(), 1);
        assert_eq!(
            split_statements("-- a; b\nCREATE X;\n\n-- c\nCREATE Y"),
            vec!["CREATE X", "CREATE Y"]
        );
    }
}
