//! The JSON API, `/api/v1`. Every answer is an envelope `{ "data": …, "meta": { "requestId":
//! …, "pagination"? } }`; every error is `{ "error": { "code", "message", "fields"? } }` with a
//! stable code. Authentication: `Authorization: Bearer <API key>` (scoped to one project,
//! carrying its creator's role) or the web session cookie. Writes must be
//! `Content-Type: application/json`, which a cross-site HTML form cannot send: that is the CSRF
//! defence for cookie-authenticated API calls.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;
use serde_json::{Value, json};
use store::{ApiKey, Project, Registrar, Role, SipAccount, SipAccountInput, StoreError, User};

use crate::accounts::{AccountRow, RangeSpec, check_row, expand_range, parse_csv};

use crate::validate::{FieldMessage, RegistrarForm, validate};
use crate::{AppState, auth, request_id};

/// An API error with a stable machine-readable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<FieldMessage>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// 401 `UNAUTHENTICATED`.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "sign in or send Authorization: Bearer <API key>",
        )
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(needed: Role) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!("this action needs the {} role or higher", needed.label()),
        )
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    fn validation(fields: Vec<FieldMessage>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "VALIDATION_FAILED",
            message: fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
            fields,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!("{what} already exists"),
            ),
            e => {
                tracing::error!(request_id = %request_id(), error = %e, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        (
            self.status,
            axum::Json(json!({ "error": error, "meta": { "requestId": request_id() } })),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    page: usize,
    per_page: usize,
    total: usize,
}

fn envelope(status: StatusCode, data: impl Serialize, pagination: Option<Pagination>) -> Response {
    let mut meta = json!({ "requestId": request_id() });
    if let Some(p) = pagination {
        meta["pagination"] = json!(p);
    }
    (status, axum::Json(json!({ "data": data, "meta": meta }))).into_response()
}

/// Slices a list by `page` (from 1) and `perPage` (1–200, default 50).
fn paginate<T>(
    items: Vec<T>,
    q: &HashMap<String, String>,
) -> Result<(Vec<T>, Pagination), ApiError> {
    let num = |key: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match q.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("{key} must be a number from 1 to {max}"))
                }),
        }
    };
    let page = num("page", 1, 1_000_000)?;
    let per_page = num("perPage", 50, 200)?;
    let total = items.len();
    let data = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    Ok((
        data,
        Pagination {
            page,
            per_page,
            total,
        },
    ))
}

/// The caller's access to one project.
pub(crate) struct Access {
    pub project: Project,
    pub role: Role,
    pub user_id: i64,
    pub via_key: bool,
}

/// The signed-in user of a session cookie.
pub(crate) async fn session_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(User, store::Session)>, StoreError> {
    let Some(token) = auth::cookie(headers, auth::SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = state
        .store()
        .session(&auth::token_hash(&token), store::now_ms())
        .await?
    else {
        return Ok(None);
    };
    Ok(state
        .store()
        .user(session.user_id)
        .await?
        .map(|u| (u, session)))
}

/// Resolves the caller's role in project `id`: 401 without credentials, 404 when the project
/// does not exist or belongs to an organization the caller is not in (no existence leak).
async fn access(
    state: &AppState,
    headers: &HeaderMap,
    project_id: i64,
) -> Result<Access, ApiError> {
    if let Some(token) = auth::bearer(headers) {
        let key = state
            .store()
            .api_key_by_hash(&auth::token_hash(&token))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "invalid or revoked API key",
                )
            })?;
        if key.project_id != project_id {
            return Err(ApiError::not_found("project"));
        }
        let project = state
            .store()
            .project(project_id)
            .await?
            .ok_or_else(|| ApiError::not_found("project"))?;
        // A key never exceeds its creator's current role; a creator who left disables it.
        let current = state
            .store()
            .project_role(project.id, key.created_by)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "the API key's creator no longer has access to the project",
                )
            })?;
        return Ok(Access {
            project,
            role: key.role.min(current),
            user_id: key.created_by,
            via_key: true,
        });
    }
    let (user, _) = session_user(state, headers)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let project = state
        .store()
        .project(project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let role = state
        .store()
        .project_role(project.id, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(Access {
        project,
        role,
        user_id: user.id,
        via_key: false,
    })
}

fn require(a: &Access, needed: Role) -> Result<(), ApiError> {
    if a.role >= needed {
        Ok(())
    } else {
        Err(ApiError::forbidden(needed))
    }
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// A registrar body as the form's strings (numbers become their decimal text).
fn registrar_form(v: &Value) -> Result<RegistrarForm, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let mut errors = Vec::new();
    let mut get = |key: &'static str| -> String {
        match obj.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                errors.push(FieldMessage {
                    field: key,
                    message: "must be a string or a number".into(),
                });
                String::new()
            }
        }
    };
    let form = RegistrarForm {
        name: get("name"),
        domain: get("domain"),
        port: get("port"),
        transport: get("transport"),
        outbound_proxy: get("outboundProxy"),
        tls_verify: get("tlsVerify"),
        tls_ca_pem: get("tlsCaPem"),
        tls_cert_pem: get("tlsCertPem"),
        tls_key_pem: get("tlsKeyPem"),
    };
    if errors.is_empty() {
        Ok(form)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// The API view of a registrar (the private key is never returned).
pub(crate) fn registrar_json(r: &Registrar) -> Value {
    json!({
        "id": r.id,
        "projectId": r.project_id,
        "kind": r.kind,
        "name": r.name,
        "domain": r.domain,
        "port": r.port,
        "effectivePort": r.effective_port(),
        "transport": r.transport,
        "outboundProxy": r.outbound_proxy,
        "registrationUri": r.registration_uri(),
        "dnsDiscovery": r.transport == store::Transport::Auto,
        "tlsVerify": r.tls_verify,
        "tlsCaPem": r.tls_ca_pem,
        "tlsCertPem": r.tls_cert_pem,
        "hasTlsKey": r.tls_key_pem.is_some(),
        "createdAt": r.created_at,
        "updatedAt": r.updated_at,
    })
}

fn key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id, "projectId": k.project_id, "name": k.name, "prefix": k.prefix,
        "role": k.role, "createdBy": k.created_by, "createdAt": k.created_at, "revokedAt": k.revoked_at,
    })
}

fn now_secs() -> i64 {
    store::now_ms() / 1000
}

/// The associated data binding an encrypted TLS client key to its project.
pub(crate) fn tls_key_aad(project_id: i64) -> String {
    format!("registrar-tls-key:{project_id}")
}

/// Encrypts the TLS client key of a validated registrar before it is stored.
pub(crate) fn seal_tls_key(state: &AppState, project_id: i64, input: &mut store::RegistrarInput) {
    if let Some(k) = &input.tls_key_pem {
        input.tls_key_pem = Some(state.secret_key().encrypt(k, &tls_key_aad(project_id)));
    }
}

/// On edit, a blank key with a certificate keeps the stored key (keys are never shown again).
pub(crate) fn keep_stored_key(state: &AppState, form: &mut RegistrarForm, existing: &Registrar) {
    if form.tls_key_pem.trim().is_empty()
        && !form.tls_cert_pem.trim().is_empty()
        && let Some(k) = &existing.tls_key_pem
        && let Ok(clear) = state
            .secret_key()
            .decrypt(k, &tls_key_aad(existing.project_id))
    {
        form.tls_key_pem = clear;
    }
}

/// Per-credential API rate limit (API key, else session, else one shared anonymous bucket).
async fn rate_limit(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers();
    let key = match (
        auth::bearer(headers),
        auth::cookie(headers, auth::SESSION_COOKIE),
    ) {
        (Some(k), _) => format!("key:{}", auth::token_hash(&k)),
        (None, Some(c)) => format!("session:{}", auth::token_hash(&c)),
        (None, None) => "anonymous".to_string(),
    };
    let verdict = state.api_limiter().hit(&key, std::time::Instant::now());
    match verdict {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("too many requests; retry in {wait} s"),
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, wait.into());
            resp
        }
    }
}

pub(crate) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        .route("/me", get(me))
        .route("/projects", get(list_projects).post(create_project))
        .route("/projects/{id}", get(get_project))
        .route(
            "/projects/{id}/registrars",
            get(list_registrars).post(create_registrar),
        )
        .route(
            "/projects/{id}/registrars/{rid}",
            get(get_registrar)
                .put(update_registrar)
                .delete(delete_registrar),
        )
        .route(
            "/projects/{id}/registrars/{rid}/check",
            post(check_registrar),
        )
        .route(
            "/projects/{id}/registrars/{rid}/accounts",
            get(list_accounts).post(add_account),
        )
        .route(
            "/projects/{id}/registrars/{rid}/accounts/bulk",
            post(bulk_accounts),
        )
        .route(
            "/projects/{id}/registrars/{rid}/accounts/{aid}",
            delete(delete_account),
        )
        .route(
            "/projects/{id}/registrars/{rid}/pools",
            get(list_pools).post(create_pool),
        )
        .route(
            "/projects/{id}/registrars/{rid}/pools/{pid}",
            get(get_pool).put(update_pool).delete(delete_pool),
        )
        .route("/orgs/{oid}/members", get(list_members))
        .route(
            "/orgs/{oid}/members/{uid}",
            axum::routing::put(update_member).delete(remove_member),
        )
        .route(
            "/orgs/{oid}/invitations",
            get(list_invitations).post(create_invitation),
        )
        .route("/orgs/{oid}/invitations/{iid}", delete(revoke_invitation))
        .route(
            "/projects/{id}/members/{uid}",
            axum::routing::put(set_project_role),
        )
        .route("/projects/{id}/api-keys", get(list_keys).post(create_key))
        .route("/projects/{id}/api-keys/{kid}", delete(revoke_key))
        .fallback(|| async { ApiError::not_found("resource") })
        .layer(axum::middleware::from_fn_with_state(state, rate_limit))
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let (user, _) = session_user(&state, &headers)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let orgs: Vec<Value> = state
        .store()
        .memberships(user.id)
        .await?
        .into_iter()
        .map(|(o, r)| json!({ "id": o.id, "name": o.name, "slug": o.slug, "role": r }))
        .collect();
    Ok(envelope(
        StatusCode::OK,
        json!({ "id": user.id, "email": user.email, "name": user.name, "organizations": orgs }),
        None,
    ))
}

async fn list_projects(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    if let Some(token) = auth::bearer(&headers) {
        let key = state
            .store()
            .api_key_by_hash(&auth::token_hash(&token))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "invalid or revoked API key",
                )
            })?;
        let a = access(&state, &headers, key.project_id).await?;
        let (data, p) = paginate(vec![a.project], &q)?;
        return Ok(envelope(StatusCode::OK, data, Some(p)));
    }
    let (user, _) = session_user(&state, &headers)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let mut projects = Vec::new();
    for (org, _) in state.store().memberships(user.id).await? {
        projects.extend(state.store().accessible_projects(org.id, user.id).await?);
    }
    let (data, p) = paginate(projects, &q)?;
    Ok(envelope(StatusCode::OK, data, Some(p)))
}

async fn create_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (user, _) = session_user(&state, &headers)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let v = json_body(&headers, &body)?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation(vec![FieldMessage {
            field: "name",
            message: "Name is required (at most 100 characters)".into(),
        }]));
    }
    let memberships = state.store().memberships(user.id).await?;
    let (org, role) = match v.get("organizationId").and_then(Value::as_i64) {
        Some(id) => memberships
            .into_iter()
            .find(|(o, _)| o.id == id)
            .ok_or_else(|| ApiError::not_found("organization"))?,
        None => memberships
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("organization"))?,
    };
    if role < Role::Admin {
        return Err(ApiError::forbidden(Role::Admin));
    }
    let p = state.store().create_project(org.id, &name).await?;
    Ok(envelope(StatusCode::CREATED, p, None))
}

async fn get_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    let mut v = json!(a.project);
    v["role"] = json!(a.role);
    Ok(envelope(StatusCode::OK, v, None))
}

async fn list_registrars(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    let regs: Vec<Value> = state
        .store()
        .registrars(a.project.id)
        .await?
        .iter()
        .map(registrar_json)
        .collect();
    let (data, p) = paginate(regs, &q)?;
    Ok(envelope(StatusCode::OK, data, Some(p)))
}

async fn create_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let form = registrar_form(&json_body(&headers, &body)?)?;
    let mut v = validate(&form, now_secs()).map_err(ApiError::validation)?;
    seal_tls_key(&state, a.project.id, &mut v.input);
    let r = state
        .store()
        .create_registrar(a.project.id, &v.input)
        .await?;
    let mut data = registrar_json(&r);
    data["warnings"] = json!(v.warnings);
    Ok(envelope(StatusCode::CREATED, data, None))
}

async fn get_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    let r = state
        .store()
        .registrar(a.project.id, rid)
        .await?
        .ok_or_else(|| ApiError::not_found("registrar"))?;
    Ok(envelope(StatusCode::OK, registrar_json(&r), None))
}

async fn update_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let existing = state
        .store()
        .registrar(a.project.id, rid)
        .await?
        .ok_or_else(|| ApiError::not_found("registrar"))?;
    if existing.kind == store::RegistrarKind::Builtin {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "BUILTIN_READ_ONLY",
            "the built-in registrar cannot be changed",
        ));
    }
    let mut form = registrar_form(&json_body(&headers, &body)?)?;
    keep_stored_key(&state, &mut form, &existing);
    let mut v = validate(&form, now_secs()).map_err(ApiError::validation)?;
    seal_tls_key(&state, a.project.id, &mut v.input);
    let r = state
        .store()
        .update_registrar(a.project.id, rid, &v.input)
        .await?
        .ok_or_else(|| ApiError::not_found("registrar"))?;
    let mut data = registrar_json(&r);
    data["warnings"] = json!(v.warnings);
    Ok(envelope(StatusCode::OK, data, None))
}

async fn delete_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    if !state.store().delete_registrar(a.project.id, rid).await? {
        return Err(ApiError::not_found("registrar"));
    }
    Ok(envelope(StatusCode::OK, json!({ "deleted": rid }), None))
}

impl From<crate::check::CheckError> for ApiError {
    fn from(e: crate::check::CheckError) -> ApiError {
        use crate::check::CheckError as C;
        match e {
            C::AccountNotFound => ApiError::not_found("SIP account"),
            C::BuiltinNoAccounts => {
                ApiError::new(StatusCode::CONFLICT, "BUILTIN_NO_ACCOUNTS", e.to_string())
            }
            C::Setup(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "CHECK_SETUP_FAILED", m),
            C::Timeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "CHECK_TIMEOUT", e.to_string())
            }
            C::Store(s) => s.into(),
        }
    }
}

/// `POST …/registrars/{rid}/check` `{ "account": <id> | null }`: runs the connectivity
/// checklist and returns it (200 whatever the registrar answered; `registered` says).
async fn check_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Tester)?;
    let v = json_body(&headers, &body)?;
    let account = match v.get("account") {
        None | Some(Value::Null) => None,
        Some(x) => Some(x.as_i64().ok_or_else(|| {
            ApiError::validation(vec![FieldMessage {
                field: "account",
                message: "account must be a SIP account id (a number) or null".into(),
            }])
        })?),
    };
    let r = state
        .store()
        .registrar(a.project.id, rid)
        .await?
        .ok_or_else(|| ApiError::not_found("registrar"))?;
    let report = crate::check::run(&state, &r, account).await?;
    Ok(envelope(
        StatusCode::OK,
        crate::check::report_json(&report),
        None,
    ))
}

async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let keys: Vec<Value> = state
        .store()
        .api_keys(a.project.id)
        .await?
        .iter()
        .map(key_json)
        .collect();
    let (data, p) = paginate(keys, &q)?;
    Ok(envelope(StatusCode::OK, data, Some(p)))
}

/// Creates an API key for a project; the key is in the answer once and never again.
pub(crate) async fn mint_key(
    state: &AppState,
    a: &Access,
    name: &str,
) -> Result<(ApiKey, String), ApiError> {
    let secret = format!("smk_{}", auth::random_token(32));
    let prefix: String = secret.chars().take(12).collect();
    let key = state
        .store()
        .create_api_key(
            a.project.id,
            name,
            &prefix,
            &auth::token_hash(&secret),
            a.role,
            a.user_id,
        )
        .await?;
    Ok((key, secret))
}

async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    if a.via_key {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "API keys are created by a signed-in user, not by another API key",
        ));
    }
    let v = json_body(&headers, &body)?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation(vec![FieldMessage {
            field: "name",
            message: "Name is required (at most 100 characters)".into(),
        }]));
    }
    let (key, secret) = mint_key(&state, &a, &name).await?;
    let mut data = key_json(&key);
    data["key"] = json!(secret);
    Ok(envelope(StatusCode::CREATED, data, None))
}

async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, kid)): Path<(i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    if !state.store().revoke_api_key(a.project.id, kid).await? {
        return Err(ApiError::not_found("API key"));
    }
    Ok(envelope(StatusCode::OK, json!({ "revoked": kid }), None))
}

// ------------------------------------------------------------------ SIP accounts

/// The custom registrar whose accounts are addressed (the built-in one has none).
pub(crate) async fn accounts_registrar(
    state: &AppState,
    a: &Access,
    rid: i64,
) -> Result<Registrar, ApiError> {
    let r = state
        .store()
        .registrar(a.project.id, rid)
        .await?
        .ok_or_else(|| ApiError::not_found("registrar"))?;
    if r.kind == store::RegistrarKind::Builtin {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "BUILTIN_NO_ACCOUNTS",
            "the built-in registrar needs no SIP accounts: endpoints get ephemeral credentials",
        ));
    }
    Ok(r)
}

fn account_json(a: &SipAccount) -> Value {
    json!({
        "id": a.id, "registrarId": a.registrar_id, "username": a.username, "realm": a.realm,
        "extension": a.extension, "hasPassword": true, "createdAt": a.created_at,
    })
}

/// Encrypts and saves a batch; usernames already stored are refused, naming them.
pub(crate) async fn save_accounts(
    state: &AppState,
    r: &Registrar,
    rows: &[AccountRow],
) -> Result<Vec<SipAccount>, ApiError> {
    let existing: std::collections::HashSet<String> = state
        .store()
        .sip_accounts(r.id)
        .await?
        .into_iter()
        .map(|a| a.username)
        .collect();
    let clashes: Vec<&str> = rows
        .iter()
        .filter(|row| existing.contains(&row.username))
        .map(|row| row.username.as_str())
        .collect();
    if !clashes.is_empty() {
        let shown: Vec<&str> = clashes.iter().take(10).copied().collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!(
                "{} username(s) already exist on this registrar: {}{}",
                clashes.len(),
                shown.join(", "),
                if clashes.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        ));
    }
    let inputs: Vec<SipAccountInput> = rows
        .iter()
        .map(|row| SipAccountInput {
            username: row.username.clone(),
            password_enc: state
                .secret_key()
                .encrypt(&row.password, &crate::accounts::aad(r.id, &row.username)),
            realm: row.realm.clone(),
            extension: row.extension.clone(),
        })
        .collect();
    Ok(state.store().add_sip_accounts(r.id, &inputs).await?)
}

async fn list_accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    let r = accounts_registrar(&state, &a, rid).await?;
    let all: Vec<Value> = state
        .store()
        .sip_accounts(r.id)
        .await?
        .iter()
        .map(account_json)
        .collect();
    let (data, p) = paginate(all, &q)?;
    Ok(envelope(StatusCode::OK, data, Some(p)))
}

fn text_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

async fn add_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let r = accounts_registrar(&state, &a, rid).await?;
    let v = json_body(&headers, &body)?;
    let row = AccountRow {
        username: text_field(&v, "username").unwrap_or_default(),
        password: v
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        realm: text_field(&v, "realm"),
        extension: text_field(&v, "extension"),
    };
    if let Err(m) = check_row(&row) {
        let field = ["username", "password", "realm", "extension"]
            .into_iter()
            .find(|f| m.starts_with(f))
            .unwrap_or("username");
        return Err(ApiError::validation(vec![FieldMessage {
            field,
            message: m,
        }]));
    }
    let saved = save_accounts(&state, &r, &[row]).await?;
    Ok(envelope(StatusCode::CREATED, account_json(&saved[0]), None))
}

async fn bulk_accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let r = accounts_registrar(&state, &a, rid).await?;
    let v = json_body(&headers, &body)?;
    let rows = match (v.get("csv").and_then(Value::as_str), v.get("range")) {
        (Some(csv), None) => parse_csv(csv).map_err(|errs| {
            ApiError::validation(
                errs.into_iter()
                    .map(|(line, message)| FieldMessage {
                        field: "csv",
                        message: format!("line {line}: {message}"),
                    })
                    .collect(),
            )
        })?,
        (None, Some(range)) => {
            let spec: RangeSpec = serde_json::from_value(range.clone())
                .map_err(|e| ApiError::bad_request(format!("range: {e}")))?;
            expand_range(&spec).map_err(|(field, message)| {
                ApiError::validation(vec![FieldMessage { field, message }])
            })?
        }
        _ => {
            return Err(ApiError::bad_request(
                "send either {\"csv\": \"…\"} or {\"range\": {…}}",
            ));
        }
    };
    let saved = save_accounts(&state, &r, &rows).await?;
    Ok(envelope(
        StatusCode::CREATED,
        json!({ "created": saved.len(), "accounts": saved.iter().map(account_json).collect::<Vec<_>>() }),
        None,
    ))
}

async fn delete_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid, aid)): Path<(i64, i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let r = accounts_registrar(&state, &a, rid).await?;
    if !state.store().delete_sip_account(r.id, aid).await? {
        return Err(ApiError::not_found("SIP account"));
    }
    Ok(envelope(StatusCode::OK, json!({ "deleted": aid }), None))
}

// ------------------------------------------------------------------ members and invitations

impl From<crate::members::MemberError> for ApiError {
    fn from(e: crate::members::MemberError) -> ApiError {
        use crate::members::MemberError as M;
        match e {
            M::NotAdmin => ApiError::forbidden(Role::Admin),
            M::OwnerOnly | M::AboveOwnRole => {
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", e.to_string())
            }
            M::LastOwner => ApiError::new(StatusCode::CONFLICT, "LAST_OWNER", e.to_string()),
            M::NotFound(what) => ApiError::not_found(what),
            M::Invalid(m) => ApiError::validation(vec![FieldMessage {
                field: "role",
                message: m.to_string(),
            }]),
            M::Store(s) => s.into(),
        }
    }
}

// ------------------------------------------------------------------ account pools

/// A pool body: name, strategy, and the accounts (`accountIds`, or `allAccounts: true`).
async fn pool_body(
    state: &AppState,
    r: &Registrar,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, store::rotation::Strategy, Vec<i64>), ApiError> {
    let v = json_body(headers, body)?;
    let mut errors = Vec::new();
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldMessage {
            field: "name",
            message: "Name is required (at most 100 characters)".into(),
        });
    }
    let strategy = v
        .get("strategy")
        .and_then(Value::as_str)
        .unwrap_or("sequential");
    let strategy = store::rotation::Strategy::parse(strategy).unwrap_or_else(|| {
        errors.push(FieldMessage {
            field: "strategy",
            message: "must be sequential, round_robin, random or least_recently_used".into(),
        });
        store::rotation::Strategy::Sequential
    });
    let ids: Vec<i64> = if v.get("allAccounts").and_then(Value::as_bool) == Some(true) {
        state
            .store()
            .sip_accounts(r.id)
            .await?
            .iter()
            .map(|a| a.id)
            .collect()
    } else {
        match v.get("accountIds") {
            None => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_i64) => {
                a.iter().filter_map(Value::as_i64).collect()
            }
            Some(_) => {
                errors.push(FieldMessage {
                    field: "accountIds",
                    message: "must be an array of account ids".into(),
                });
                Vec::new()
            }
        }
    };
    if errors.is_empty() {
        Ok((name, strategy, ids))
    } else {
        Err(ApiError::validation(errors))
    }
}

fn pool_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => ApiError::validation(vec![FieldMessage {
            field: "accountIds",
            message: format!("a {what} is not one of this registrar's accounts"),
        }]),
        e => e.into(),
    }
}

async fn list_pools(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    let r = accounts_registrar(&state, &a, rid).await?;
    Ok(envelope(
        StatusCode::OK,
        state.store().account_pools(r.id).await?,
        None,
    ))
}

async fn create_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let r = accounts_registrar(&state, &a, rid).await?;
    let (name, strategy, ids) = pool_body(&state, &r, &headers, &body).await?;
    let p = state
        .store()
        .create_pool(r.id, &name, strategy, &ids)
        .await
        .map_err(pool_error)?;
    Ok(envelope(StatusCode::CREATED, p, None))
}

async fn get_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid, pid)): Path<(i64, i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    let r = accounts_registrar(&state, &a, rid).await?;
    let p = state
        .store()
        .account_pool(r.id, pid)
        .await?
        .ok_or_else(|| ApiError::not_found("pool"))?;
    Ok(envelope(StatusCode::OK, p, None))
}

async fn update_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid, pid)): Path<(i64, i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let r = accounts_registrar(&state, &a, rid).await?;
    let (name, strategy, ids) = pool_body(&state, &r, &headers, &body).await?;
    let p = state
        .store()
        .update_pool(r.id, pid, &name, strategy, &ids)
        .await
        .map_err(pool_error)?
        .ok_or_else(|| ApiError::not_found("pool"))?;
    Ok(envelope(StatusCode::OK, p, None))
}

async fn delete_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, rid, pid)): Path<(i64, i64, i64)>,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    require(&a, Role::Editor)?;
    let r = accounts_registrar(&state, &a, rid).await?;
    if !state.store().delete_pool(r.id, pid).await? {
        return Err(ApiError::not_found("pool"));
    }
    Ok(envelope(StatusCode::OK, json!({ "deleted": pid }), None))
}

/// The signed-in caller's role in an organization (404 when not a member; API keys are
/// project-scoped and cannot manage the organization).
async fn org_access(
    state: &AppState,
    headers: &HeaderMap,
    org_id: i64,
) -> Result<(User, Role), ApiError> {
    if auth::bearer(headers).is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "API keys are scoped to a project; organization members are managed by a signed-in user",
        ));
    }
    let (user, _) = session_user(state, headers)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let role = state
        .store()
        .member_role(org_id, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok((user, role))
}

fn role_field(v: &Value, key: &'static str) -> Result<Option<Role>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Role::parse(s).map(Some).ok_or_else(|| {
            ApiError::validation(vec![FieldMessage {
                field: key,
                message: "must be viewer, tester, editor, admin or owner".into(),
            }])
        }),
        Some(_) => Err(ApiError::validation(vec![FieldMessage {
            field: key,
            message: "must be a string".into(),
        }])),
    }
}

async fn list_members(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(oid): Path<i64>,
) -> ApiResult {
    org_access(&state, &headers, oid).await?;
    Ok(envelope(
        StatusCode::OK,
        state.store().members(oid).await?,
        None,
    ))
}

async fn update_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((oid, uid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let (_, caller) = org_access(&state, &headers, oid).await?;
    let v = json_body(&headers, &body)?;
    let role = role_field(&v, "role")?;
    let all = match v.get("allProjects") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::validation(vec![FieldMessage {
                field: "allProjects",
                message: "must be true or false".into(),
            }]));
        }
    };
    let m = crate::members::update_member(&state, oid, caller, uid, role, all).await?;
    Ok(envelope(StatusCode::OK, m, None))
}

async fn remove_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((oid, uid)): Path<(i64, i64)>,
) -> ApiResult {
    let (_, caller) = org_access(&state, &headers, oid).await?;
    crate::members::remove_member(&state, oid, caller, uid).await?;
    Ok(envelope(StatusCode::OK, json!({ "removed": uid }), None))
}

async fn list_invitations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(oid): Path<i64>,
) -> ApiResult {
    let (_, caller) = org_access(&state, &headers, oid).await?;
    if caller < Role::Admin {
        return Err(ApiError::forbidden(Role::Admin));
    }
    Ok(envelope(
        StatusCode::OK,
        state.store().invitations(oid, store::now_ms()).await?,
        None,
    ))
}

async fn create_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(oid): Path<i64>,
    body: Bytes,
) -> ApiResult {
    let (user, caller) = org_access(&state, &headers, oid).await?;
    let v = json_body(&headers, &body)?;
    let email = v
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let role = role_field(&v, "role")?.unwrap_or(Role::Viewer);
    let project_id = v.get("projectId").and_then(Value::as_i64);
    let (inv, token) =
        crate::members::invite(&state, oid, caller, user.id, &email, role, project_id).await?;
    let mut data = json!(inv);
    data["path"] = json!(format!("/invite/{token}"));
    Ok(envelope(StatusCode::CREATED, data, None))
}

async fn revoke_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((oid, iid)): Path<(i64, i64)>,
) -> ApiResult {
    let (_, caller) = org_access(&state, &headers, oid).await?;
    if caller < Role::Admin {
        return Err(ApiError::forbidden(Role::Admin));
    }
    if !state.store().revoke_invitation(oid, iid).await? {
        return Err(ApiError::not_found("open invitation"));
    }
    Ok(envelope(StatusCode::OK, json!({ "revoked": iid }), None))
}

async fn set_project_role(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, uid)): Path<(i64, i64)>,
    body: Bytes,
) -> ApiResult {
    let a = access(&state, &headers, id).await?;
    if a.via_key {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "project roles are managed by a signed-in user",
        ));
    }
    let caller = state
        .store()
        .member_role(a.project.org_id, a.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let v = json_body(&headers, &body)?;
    let role = role_field(&v, "role")?;
    crate::members::set_override(&state, a.project.org_id, caller, a.project.id, uid, role).await?;
    let effective = state.store().project_role(a.project.id, uid).await?;
    Ok(envelope(
        StatusCode::OK,
        json!({ "userId": uid, "override": role, "effectiveRole": effective }),
        None,
    ))
}
