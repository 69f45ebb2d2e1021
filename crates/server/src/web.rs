//! The server-rendered web UI (askama templates, a little plain JavaScript).
//!
//! Forms carry a CSRF token: the session's for signed-in pages, a double-submit cookie for the
//! sign-in and setup forms. Session cookies are HttpOnly and SameSite=Lax.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use store::{
    Organization, Project, Registrar, RegistrarKind, Role, Session, StoreError, TlsVerify,
    Transport, User,
};

use store::rotation::Strategy;

use crate::accounts::{AccountRow, check_row, parse_csv};
use crate::api::{
    Access, accounts_registrar, keep_stored_key, mint_key, save_accounts, seal_tls_key,
    session_user,
};
use crate::validate::{FieldMessage, RegistrarForm, validate};
use crate::{AppState, auth, certs, request_id};

/// Why a page could not be shown.
enum WebError {
    /// Not signed in: go to the sign-in page.
    Login,
    NotFound,
    Forbidden(Role),
    Csrf,
    Internal,
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> WebError {
        tracing::error!(request_id = %request_id(), error = %e, "store error");
        WebError::Internal
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: String,
    message: String,
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        &MessagePage {
            title: title.to_string(),
            message: text.to_string(),
        },
    )
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Login => Redirect::to("/login").into_response(),
            WebError::NotFound => message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or you do not have access to it.",
            ),
            WebError::Forbidden(r) => message(
                StatusCode::FORBIDDEN,
                "Not allowed",
                &format!(
                    "This needs the {} role or higher in this project.",
                    r.label()
                ),
            ),
            WebError::Csrf => message(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token did not match. Go back, reload the page and try again.",
            ),
            WebError::Internal => message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                &format!(
                    "The server failed to handle this request (request id {}).",
                    request_id()
                ),
            ),
        }
    }
}

type WebResult = Result<Response, WebError>;

fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(request_id = %request_id(), error = %e, "template error");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

// ------------------------------------------------------------------ layout

struct NavProject {
    name: String,
    slug: String,
    active: bool,
}

struct NavLink {
    label: &'static str,
    href: String,
    active: bool,
}

/// What the sidebar and project navigation need.
struct Layout {
    user_email: String,
    org_name: String,
    /// The other organizations the user belongs to (for the switcher).
    other_orgs: Vec<(i64, String)>,
    role: &'static str,
    csrf: String,
    projects: Vec<NavProject>,
    project_name: String,
    sections: Vec<NavLink>,
    can_edit: bool,
    is_admin: bool,
}

/// Project sections, in navigation order: (path segment, label). Only Registrars and API keys
/// exist yet; the others are placeholders for what comes later.
const SECTIONS: [(&str, &str); 9] = [
    ("registrars", "Registrars"),
    ("accounts", "SIP Accounts"),
    ("tests", "Tests"),
    ("runs", "Runs"),
    ("probes", "Probes"),
    ("status-pages", "Status pages"),
    ("api-keys", "API keys"),
    ("members", "Members"),
    ("settings", "Settings"),
];

/// A signed-in request: the user, their session, organization, role and its projects.
struct Ctx {
    user: User,
    session: Session,
    org: Organization,
    /// The role that applies to the page: the project role inside a project, else `org_role`.
    role: Role,
    /// The organization role (members, projects).
    org_role: Role,
    projects: Vec<Project>,
    other_orgs: Vec<(i64, String)>,
}

/// Cookie holding the organization the UI shows (a view preference, not a credential).
const ORG_COOKIE: &str = "sipmeter_org";

impl Ctx {
    fn layout(&self, project: Option<&Project>, section: &str) -> Layout {
        Layout {
            user_email: self.user.email.clone(),
            org_name: self.org.name.clone(),
            other_orgs: self.other_orgs.clone(),
            role: self.role.label(),
            csrf: self.session.csrf_token.clone(),
            projects: self
                .projects
                .iter()
                .map(|p| NavProject {
                    name: p.name.clone(),
                    slug: p.slug.clone(),
                    active: project.is_some_and(|c| c.id == p.id),
                })
                .collect(),
            project_name: project.map(|p| p.name.clone()).unwrap_or_default(),
            sections: project
                .map(|p| {
                    SECTIONS
                        .iter()
                        .map(|(seg, label)| NavLink {
                            label,
                            href: format!("/projects/{}/{seg}", p.slug),
                            active: *seg == section,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            can_edit: self.role >= Role::Editor,
            is_admin: self.role >= Role::Admin,
        }
    }

    fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), WebError> {
        match form.get("csrf") {
            Some(t) if auth::same(t, &self.session.csrf_token) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }

    fn require(&self, role: Role) -> Result<(), WebError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(WebError::Forbidden(role))
        }
    }

    fn access(&self, project: &Project) -> Access {
        Access {
            project: project.clone(),
            role: self.role,
            user_id: self.user.id,
            via_key: false,
        }
    }
}

async fn ctx(state: &AppState, headers: &HeaderMap) -> Result<Ctx, WebError> {
    let (user, session) = session_user(state, headers).await?.ok_or(WebError::Login)?;
    // The organization chosen with the switcher, else the first one the user joined.
    let memberships = state.store().memberships(user.id).await?;
    let chosen: Option<i64> = auth::cookie(headers, ORG_COOKIE).and_then(|v| v.parse().ok());
    let (org, role) = memberships
        .iter()
        .find(|(o, _)| Some(o.id) == chosen)
        .or(memberships.first())
        .cloned()
        .ok_or(WebError::NotFound)?;
    let other_orgs = memberships
        .iter()
        .filter(|(o, _)| o.id != org.id)
        .map(|(o, _)| (o.id, o.name.clone()))
        .collect();
    let projects = state.store().accessible_projects(org.id, user.id).await?;
    Ok(Ctx {
        user,
        session,
        org,
        role,
        org_role: role,
        projects,
        other_orgs,
    })
}

async fn project_ctx(
    state: &AppState,
    headers: &HeaderMap,
    slug: &str,
) -> Result<(Ctx, Project), WebError> {
    let mut c = ctx(state, headers).await?;
    let p = c
        .projects
        .iter()
        .find(|p| p.slug == slug)
        .cloned()
        .ok_or(WebError::NotFound)?;
    // Inside a project, the project's role (override or organization role) decides.
    c.role = state
        .store()
        .project_role(p.id, c.user.id)
        .await?
        .ok_or(WebError::NotFound)?;
    Ok((c, p))
}

// ------------------------------------------------------------------ routes

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/orgs/{id}/switch", post(switch_org))
        .route("/setup", get(setup_page).post(setup))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/projects", get(projects_page).post(create_project))
        .route("/projects/{slug}", get(project_home))
        .route(
            "/projects/{slug}/registrars",
            get(registrars_page).post(create_registrar),
        )
        .route("/projects/{slug}/registrars/new", get(new_registrar_page))
        .route(
            "/projects/{slug}/registrars/{id}",
            get(registrar_page).post(update_registrar),
        )
        .route(
            "/projects/{slug}/registrars/{id}/edit",
            get(edit_registrar_page),
        )
        .route(
            "/projects/{slug}/registrars/{id}/check",
            post(check_registrar),
        )
        .route(
            "/projects/{slug}/registrars/{id}/delete",
            post(delete_registrar),
        )
        .route(
            "/projects/{slug}/api-keys",
            get(api_keys_page).post(create_api_key),
        )
        .route(
            "/projects/{slug}/api-keys/{id}/revoke",
            post(revoke_api_key),
        )
        .route("/projects/{slug}/accounts", get(accounts_page))
        .route("/projects/{slug}/accounts/{rid}", post(add_account))
        .route("/projects/{slug}/accounts/{rid}/bulk", post(bulk_accounts))
        .route("/projects/{slug}/accounts/{rid}/pools", post(create_pool))
        .route(
            "/projects/{slug}/accounts/{rid}/pools/{pid}/delete",
            post(delete_pool),
        )
        .route(
            "/projects/{slug}/accounts/{rid}/{aid}/delete",
            post(delete_account),
        )
        .route("/projects/{slug}/members", get(members_page))
        .route("/projects/{slug}/members/{uid}", post(update_member))
        .route("/projects/{slug}/members/{uid}/remove", post(remove_member))
        .route("/projects/{slug}/invitations", post(create_invitation))
        .route(
            "/projects/{slug}/invitations/{id}/revoke",
            post(revoke_invitation),
        )
        .route("/invite/{token}", get(invite_page).post(accept_invite))
        .route("/projects/{slug}/{section}", get(placeholder))
        .fallback(|| async { WebError::NotFound })
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset(include_str!("../static/app.css"), "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(
        include_str!("../static/app.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> WebResult {
    match ctx(&state, &headers).await {
        Ok(c) => Ok(match c.projects.first() {
            Some(p) => see_other(&format!("/projects/{}/registrars", p.slug)),
            None => see_other("/projects"),
        }),
        Err(WebError::Login) => Ok(see_other("/login")),
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------------------ sign-in, setup

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: String,
}

/// Renders a bare form with a fresh double-submit CSRF cookie.
fn with_login_csrf(
    state: &AppState,
    status: StatusCode,
    make: impl FnOnce(String) -> Response,
) -> Response {
    let token = auth::random_token(16);
    let mut resp = make(token.clone());
    *resp.status_mut() = status;
    if let Ok(v) = auth::set_cookie(
        auth::LOGIN_CSRF_COOKIE,
        &token,
        3600,
        "Strict",
        state.secure_cookies(),
    )
    .parse()
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn login_form(state: &AppState, status: StatusCode, email: &str, error: &str) -> Response {
    with_login_csrf(state, status, |csrf| {
        render(
            StatusCode::OK,
            &LoginPage {
                csrf,
                email: email.to_string(),
                error: error.to_string(),
            },
        )
    })
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> WebResult {
    if session_user(&state, &headers).await?.is_some() {
        return Ok(see_other("/"));
    }
    if state.store().count_users().await? == 0 {
        return Ok(message(
            StatusCode::OK,
            "sipmeter is not set up yet",
            "Open the one-time setup link printed by `sipmeter serve`, or restart it with --admin-email and --admin-password.",
        ));
    }
    Ok(login_form(&state, StatusCode::OK, "", ""))
}

fn login_csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (
        auth::cookie(headers, auth::LOGIN_CSRF_COOKIE),
        form.get("csrf"),
    ) {
        (Some(c), Some(f)) => auth::same(&c, f),
        _ => false,
    }
}

/// A hash to verify against when the email is unknown, so both cases take the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| auth::hash_password("sipmeter-timing-equaliser").unwrap_or_default())
}

async fn start_session(state: &AppState, user_id: i64, to: &str) -> WebResult {
    let token = auth::random_token(32);
    let csrf = auth::random_token(16);
    state
        .store()
        .create_session(
            &auth::token_hash(&token),
            user_id,
            &csrf,
            store::now_ms() + auth::SESSION_TTL_MS,
        )
        .await?;
    let mut resp = see_other(to);
    let cookie = auth::set_cookie(
        auth::SESSION_COOKIE,
        &token,
        auth::SESSION_TTL_MS / 1000,
        "Lax",
        state.secure_cookies(),
    );
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> WebResult {
    let email = form
        .get("email")
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if !login_csrf_ok(&headers, &form) {
        return Ok(login_form(
            &state,
            StatusCode::FORBIDDEN,
            &email,
            "The form expired. Please sign in again.",
        ));
    }
    if let Some(wait) = state.limiter().locked(&email, Instant::now()) {
        let minutes = wait.div_ceil(60);
        return Ok(login_form(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &email,
            &format!("Too many failed sign-in attempts. Try again in {minutes} minute(s)."),
        ));
    }
    let user = state.store().user_by_email(&email).await?;
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || {
        auth::verify_password(&password, phc.as_deref().unwrap_or_else(|| dummy_hash()))
    })
    .await
    .unwrap_or(false);
    match user {
        Some(u) if ok => {
            state.limiter().succeed(&email);
            start_session(&state, u.id, "/").await
        }
        _ => {
            state.limiter().fail(&email, Instant::now());
            tracing::info!(request_id = %request_id(), "failed sign-in");
            Ok(login_form(
                &state,
                StatusCode::UNAUTHORIZED,
                &email,
                "Wrong email or password.",
            ))
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> WebResult {
    if let Some(token) = auth::cookie(&headers, auth::SESSION_COOKIE) {
        let c = ctx(&state, &headers).await?;
        c.check_csrf(&form)?;
        state
            .store()
            .delete_session(&auth::token_hash(&token))
            .await?;
    }
    let mut resp = see_other("/login");
    if let Ok(v) =
        auth::set_cookie(auth::SESSION_COOKIE, "", 0, "Lax", state.secure_cookies()).parse()
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf: String,
    token: String,
    org: String,
    email: String,
    error: String,
}

async fn setup_page(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> WebResult {
    if state.store().count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    let token = q.get("token").cloned().unwrap_or_default();
    if !state.check_setup_token(&token, false) {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "Invalid setup link",
            "Use the one-time link printed by `sipmeter serve`.",
        ));
    }
    Ok(with_login_csrf(&state, StatusCode::OK, |csrf| {
        render(
            StatusCode::OK,
            &SetupPage {
                csrf,
                token,
                org: "My organization".into(),
                email: String::new(),
                error: String::new(),
            },
        )
    }))
}

async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> WebResult {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (token, org, email, password) = (get("token"), get("org"), get("email"), get("password"));
    if state.store().count_users().await? > 0 || !state.check_setup_token(&token, false) {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "Invalid setup link",
            "This setup link was already used.",
        ));
    }
    let fail = |error: String| {
        with_login_csrf(&state, StatusCode::UNPROCESSABLE_ENTITY, |csrf| {
            render(
                StatusCode::OK,
                &SetupPage {
                    csrf,
                    token: token.clone(),
                    org: org.clone(),
                    email: email.clone(),
                    error,
                },
            )
        })
    };
    if !login_csrf_ok(&headers, &form) {
        return Ok(fail("The form expired. Please submit it again.".into()));
    }
    let org_name = if org.trim().is_empty() {
        "My organization"
    } else {
        org.trim()
    };
    match crate::create_owner(state.store(), &email, &password, org_name).await {
        Ok(boot) => {
            state.check_setup_token(&token, true);
            start_session(
                &state,
                boot.user.id,
                &format!("/projects/{}/registrars", boot.demo.slug),
            )
            .await
        }
        Err(crate::SetupError::Invalid(m)) => Ok(fail(m.replace("the admin ", "The "))),
        Err(crate::SetupError::Store(e)) => Err(e.into()),
    }
}

// ------------------------------------------------------------------ projects

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    layout: Layout,
    error: String,
}

async fn projects_page(State(state): State<AppState>, headers: HeaderMap) -> WebResult {
    let c = ctx(&state, &headers).await?;
    Ok(render(
        StatusCode::OK,
        &ProjectsPage {
            layout: c.layout(None, ""),
            error: String::new(),
        },
    ))
}

async fn create_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> WebResult {
    let c = ctx(&state, &headers).await?;
    c.check_csrf(&form)?;
    c.require(Role::Admin)?;
    let name = form
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() || name.chars().count() > 100 {
        return Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ProjectsPage {
                layout: c.layout(None, ""),
                error: "A project needs a name (at most 100 characters).".into(),
            },
        ));
    }
    let p = state.store().create_project(c.org.id, &name).await?;
    Ok(see_other(&format!("/projects/{}/registrars", p.slug)))
}

async fn project_home(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> WebResult {
    let (_, p) = project_ctx(&state, &headers, &slug).await?;
    Ok(see_other(&format!("/projects/{}/registrars", p.slug)))
}

#[derive(Template)]
#[template(path = "placeholder.html")]
struct PlaceholderPage {
    layout: Layout,
    title: String,
}

async fn placeholder(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, section)): Path<(String, String)>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    let (seg, label) = SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .ok_or(WebError::NotFound)?;
    Ok(render(
        StatusCode::OK,
        &PlaceholderPage {
            layout: c.layout(Some(&p), seg),
            title: label.to_string(),
        },
    ))
}

// ------------------------------------------------------------------ registrars

struct RegistrarRow {
    id: i64,
    name: String,
    uri: String,
    auto: bool,
    builtin: bool,
    transport: &'static str,
    proxy: String,
}

#[derive(Template)]
#[template(path = "registrars.html")]
struct RegistrarsPage {
    layout: Layout,
    slug: String,
    rows: Vec<RegistrarRow>,
    notice: String,
}

async fn registrars_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    let regs = state.store().registrars(p.id).await?;
    let notice = if q.contains_key("deleted") {
        "Registrar deleted.".to_string()
    } else if let Some(r) = q
        .get("saved")
        .and_then(|id| regs.iter().find(|r| r.id.to_string() == *id))
    {
        format!("Registrar “{}” saved.", r.name)
    } else {
        String::new()
    };
    Ok(render(
        StatusCode::OK,
        &RegistrarsPage {
            layout: c.layout(Some(&p), "registrars"),
            slug: p.slug.clone(),
            rows: regs
                .iter()
                .map(|r| RegistrarRow {
                    id: r.id,
                    name: r.name.clone(),
                    uri: r.registration_uri(),
                    auto: r.transport == Transport::Auto,
                    builtin: r.kind == RegistrarKind::Builtin,
                    transport: r.transport.as_str(),
                    proxy: r.outbound_proxy.clone().unwrap_or_default(),
                })
                .collect(),
            notice,
        },
    ))
}

struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "registrar_form.html")]
struct RegistrarFormPage {
    layout: Layout,
    slug: String,
    title: String,
    action: String,
    form: RegistrarForm,
    errors: Vec<FieldMessage>,
    has_errors: bool,
    transports: Vec<Choice>,
    verifies: Vec<Choice>,
    uri: String,
    auto: bool,
    default_port: String,
    key_placeholder: String,
}

impl RegistrarFormPage {
    /// The error message for a field, or "".
    fn err(&self, field: &str) -> &str {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
            .unwrap_or("")
    }

    fn new(
        layout: Layout,
        slug: &str,
        existing: Option<&Registrar>,
        form: RegistrarForm,
        errors: Vec<FieldMessage>,
    ) -> Self {
        let transport = Transport::parse(&form.transport).unwrap_or(Transport::Udp);
        let verify = TlsVerify::parse(&form.tls_verify).unwrap_or(TlsVerify::System);
        let port = form.port.trim().parse::<u16>().ok();
        let domain = if form.domain.trim().is_empty() {
            "DOMAIN"
        } else {
            form.domain.trim()
        };
        RegistrarFormPage {
            layout,
            slug: slug.to_string(),
            title: match existing {
                Some(r) => format!("Edit {}", r.name),
                None => "New Registrar".to_string(),
            },
            action: match existing {
                Some(r) => format!("/projects/{slug}/registrars/{}", r.id),
                None => format!("/projects/{slug}/registrars"),
            },
            has_errors: !errors.is_empty(),
            errors,
            transports: Transport::ALL
                .into_iter()
                .map(|t| Choice {
                    value: t.as_str(),
                    label: t.as_str(),
                    selected: t == transport,
                })
                .collect(),
            verifies: TlsVerify::ALL
                .into_iter()
                .map(|v| Choice {
                    value: v.as_str(),
                    label: v.label(),
                    selected: v == verify,
                })
                .collect(),
            uri: store::registration_uri(domain, port, transport),
            auto: transport == Transport::Auto,
            default_port: transport
                .default_port()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "DNS decides".into()),
            key_placeholder: match existing.and_then(|r| r.tls_key_pem.as_ref()) {
                Some(_) => "A key is stored; leave blank to keep it".into(),
                None => "-----BEGIN PRIVATE KEY-----".into(),
            },
            form,
        }
    }
}

fn form_from(map: &HashMap<String, String>) -> RegistrarForm {
    let get = |k: &str| map.get(k).cloned().unwrap_or_default();
    RegistrarForm {
        name: get("name"),
        domain: get("domain"),
        port: get("port"),
        transport: get("transport"),
        outbound_proxy: get("outboundProxy"),
        tls_verify: get("tlsVerify"),
        tls_ca_pem: get("tlsCaPem"),
        tls_cert_pem: get("tlsCertPem"),
        tls_key_pem: get("tlsKeyPem"),
    }
}

async fn new_registrar_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.require(Role::Editor)?;
    let form = RegistrarForm {
        transport: "UDP".into(),
        tls_verify: "system".into(),
        ..Default::default()
    };
    Ok(render(
        StatusCode::OK,
        &RegistrarFormPage::new(
            c.layout(Some(&p), "registrars"),
            &p.slug,
            None,
            form,
            Vec::new(),
        ),
    ))
}

fn now_secs() -> i64 {
    store::now_ms() / 1000
}

async fn create_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    c.require(Role::Editor)?;
    let mut form = form_from(&map);
    match validate(&form, now_secs()) {
        Ok(mut v) => {
            seal_tls_key(&state, p.id, &mut v.input);
            let r = state.store().create_registrar(p.id, &v.input).await?;
            // Back to the list, where it now appears; with warnings, to its page to read them.
            Ok(if v.warnings.is_empty() {
                see_other(&format!("/projects/{}/registrars?saved={}", p.slug, r.id))
            } else {
                see_other(&format!(
                    "/projects/{}/registrars/{}?saved=1&warn=1",
                    p.slug, r.id
                ))
            })
        }
        Err(errors) => {
            // The key is never echoed back into the page.
            form.tls_key_pem.clear();
            Ok(render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &RegistrarFormPage::new(
                    c.layout(Some(&p), "registrars"),
                    &p.slug,
                    None,
                    form,
                    errors,
                ),
            ))
        }
    }
}

#[derive(Template)]
#[template(path = "registrar_view.html")]
struct RegistrarViewPage {
    layout: Layout,
    slug: String,
    id: i64,
    name: String,
    uri: String,
    auto: bool,
    builtin: bool,
    domain: String,
    port: String,
    transport: &'static str,
    proxy: String,
    tls: bool,
    verify: &'static str,
    ca: String,
    client: String,
    notice: String,
    warnings: Vec<String>,
    can_check: bool,
    accounts: Vec<(i64, String)>,
    selected: i64,
    check: Option<CheckView>,
    check_error: String,
}

fn describe_cert(pem: Option<&str>) -> String {
    let Some(pem) = pem else { return "none".into() };
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let until = certs
        .first()
        .and_then(|c| certs::validity(c.as_ref()))
        .map(|v| format!(", valid until {}", certs::date(v.not_after)))
        .unwrap_or_default();
    format!("{} certificate(s){until}", certs.len())
}

fn parse_id(id: &str) -> Result<i64, WebError> {
    id.parse().map_err(|_| WebError::NotFound)
}

async fn registrar_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    let r = state
        .store()
        .registrar(p.id, parse_id(&id)?)
        .await?
        .ok_or(WebError::NotFound)?;
    registrar_view(&state, &c, &p, &r, &q, CheckOutcome::default()).await
}

/// What a "Check connectivity" left to show on the registrar page.
#[derive(Default)]
struct CheckOutcome {
    report: Option<CheckView>,
    error: String,
    account: Option<i64>,
}

struct StepView {
    mark: &'static str,
    name: &'static str,
    status: &'static str,
    ms: String,
    detail: String,
}

struct CheckView {
    registered: bool,
    final_code: String,
    hint: String,
    uri: String,
    server: String,
    steps: Vec<StepView>,
    trace: String,
}

impl CheckView {
    fn new(r: &agent::check::CheckReport) -> CheckView {
        use agent::check::StepStatus;
        CheckView {
            registered: r.registered,
            final_code: r.final_code.map(|c| c.to_string()).unwrap_or_default(),
            hint: r.hint.clone().unwrap_or_default(),
            uri: r.registration_uri.clone(),
            server: match (r.server, r.transport) {
                (Some(s), Some(t)) => format!("{s} over {}", t.via_token()),
                (Some(s), None) => s.to_string(),
                _ => String::new(),
            },
            steps: r
                .steps
                .iter()
                .map(|s| StepView {
                    mark: match s.status {
                        StepStatus::Ok => "✓",
                        StepStatus::Failed => "✗",
                        StepStatus::Skipped => "–",
                    },
                    name: s.name,
                    status: crate::check::status_str(&s.status),
                    ms: format!("{:.1} ms", s.elapsed_ms),
                    detail: s.detail.clone(),
                })
                .collect(),
            trace: r
                .trace
                .iter()
                .map(|e| {
                    let dir = match e.direction {
                        agent::trace::Direction::Sent => "→ sent",
                        agent::trace::Direction::Received => "← received",
                        agent::trace::Direction::Note => "· note",
                    };
                    format!("[{:.1} ms] {dir}\n{}", e.at_ms, e.text.trim_end())
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
        }
    }
}

async fn registrar_view(
    state: &AppState,
    c: &Ctx,
    p: &Project,
    r: &Registrar,
    q: &HashMap<String, String>,
    check: CheckOutcome,
) -> WebResult {
    let builtin = r.kind == RegistrarKind::Builtin;
    let mut warnings = Vec::new();
    if q.contains_key("warn") {
        // Re-run the checks to show the warnings of what was just saved.
        let mut form = RegistrarForm::from_input(&r.to_input());
        form.tls_key_pem.clear();
        keep_stored_key(state, &mut form, r);
        if let Ok(v) = validate(&form, now_secs()) {
            warnings = v.warnings.into_iter().map(|w| w.message).collect();
        }
    }
    let can_check = c.role >= Role::Tester;
    let accounts = if builtin || !can_check {
        Vec::new()
    } else {
        state
            .store()
            .sip_accounts(r.id)
            .await?
            .into_iter()
            .map(|a| (a.id, a.username))
            .collect()
    };
    Ok(render(
        StatusCode::OK,
        &RegistrarViewPage {
            layout: c.layout(Some(p), "registrars"),
            slug: p.slug.clone(),
            id: r.id,
            name: r.name.clone(),
            uri: r.registration_uri(),
            auto: r.transport == Transport::Auto,
            builtin,
            domain: r.domain.clone(),
            port: match (r.port, r.effective_port()) {
                (Some(p), _) => p.to_string(),
                (None, Some(d)) => format!("{d} (transport default)"),
                (None, None) => "from DNS".into(),
            },
            transport: r.transport.as_str(),
            proxy: r.outbound_proxy.clone().unwrap_or_else(|| "none".into()),
            tls: r.transport.uses_tls(),
            verify: r.tls_verify.label(),
            ca: describe_cert(r.tls_ca_pem.as_deref()),
            client: match &r.tls_key_pem {
                Some(_) => format!("{} with its key", describe_cert(r.tls_cert_pem.as_deref())),
                None => describe_cert(r.tls_cert_pem.as_deref()),
            },
            notice: if q.contains_key("saved") {
                "Registrar saved.".into()
            } else {
                String::new()
            },
            warnings,
            can_check,
            accounts,
            selected: check.account.unwrap_or(0),
            check: check.report,
            check_error: check.error,
        },
    ))
}

/// "Check connectivity": runs the checklist and shows it in the registrar page.
async fn check_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    c.require(Role::Tester)?;
    let r = state
        .store()
        .registrar(p.id, parse_id(&id)?)
        .await?
        .ok_or(WebError::NotFound)?;
    let account = match map.get("account").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| WebError::NotFound)?),
    };
    let outcome = match crate::check::run(&state, &r, account).await {
        Ok(report) => CheckOutcome {
            report: Some(CheckView::new(&report)),
            error: String::new(),
            account,
        },
        Err(crate::check::CheckError::Store(e)) => return Err(e.into()),
        Err(e) => CheckOutcome {
            report: None,
            error: e.to_string(),
            account,
        },
    };
    registrar_view(&state, &c, &p, &r, &HashMap::new(), outcome).await
}

async fn edit_registrar_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.require(Role::Editor)?;
    let r = state
        .store()
        .registrar(p.id, parse_id(&id)?)
        .await?
        .ok_or(WebError::NotFound)?;
    if r.kind == RegistrarKind::Builtin {
        return Err(WebError::NotFound);
    }
    let mut form = RegistrarForm::from_input(&r.to_input());
    form.tls_key_pem.clear();
    Ok(render(
        StatusCode::OK,
        &RegistrarFormPage::new(
            c.layout(Some(&p), "registrars"),
            &p.slug,
            Some(&r),
            form,
            Vec::new(),
        ),
    ))
}

async fn update_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    c.require(Role::Editor)?;
    let r = state
        .store()
        .registrar(p.id, parse_id(&id)?)
        .await?
        .ok_or(WebError::NotFound)?;
    if r.kind == RegistrarKind::Builtin {
        return Err(WebError::NotFound);
    }
    let mut form = form_from(&map);
    keep_stored_key(&state, &mut form, &r);
    match validate(&form, now_secs()) {
        Ok(mut v) => {
            seal_tls_key(&state, p.id, &mut v.input);
            state
                .store()
                .update_registrar(p.id, r.id, &v.input)
                .await?
                .ok_or(WebError::NotFound)?;
            let warn = if v.warnings.is_empty() { "" } else { "&warn=1" };
            Ok(see_other(&format!(
                "/projects/{}/registrars/{}?saved=1{warn}",
                p.slug, r.id
            )))
        }
        Err(errors) => {
            form.tls_key_pem.clear();
            Ok(render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &RegistrarFormPage::new(
                    c.layout(Some(&p), "registrars"),
                    &p.slug,
                    Some(&r),
                    form,
                    errors,
                ),
            ))
        }
    }
}

async fn delete_registrar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    c.require(Role::Editor)?;
    if !state.store().delete_registrar(p.id, parse_id(&id)?).await? {
        return Err(WebError::NotFound);
    }
    Ok(see_other(&format!(
        "/projects/{}/registrars?deleted=1",
        p.slug
    )))
}

// ------------------------------------------------------------------ API keys

struct KeyRow {
    id: i64,
    name: String,
    prefix: String,
    role: &'static str,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    layout: Layout,
    slug: String,
    keys: Vec<KeyRow>,
    new_key: String,
    error: String,
}

async fn keys_page(
    state: &AppState,
    c: &Ctx,
    p: &Project,
    status: StatusCode,
    new_key: String,
    error: String,
) -> WebResult {
    let keys = if c.role >= Role::Editor {
        state
            .store()
            .api_keys(p.id)
            .await?
            .into_iter()
            .map(|k| KeyRow {
                id: k.id,
                name: k.name,
                prefix: k.prefix,
                role: k.role.label(),
                revoked: k.revoked_at.is_some(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut resp = render(
        status,
        &ApiKeysPage {
            layout: c.layout(Some(p), "api-keys"),
            slug: p.slug.clone(),
            keys,
            new_key,
            error,
        },
    );
    // The page holding a fresh key must not be cached anywhere.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn api_keys_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    keys_page(&state, &c, &p, StatusCode::OK, String::new(), String::new()).await
}

async fn create_api_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    c.require(Role::Editor)?;
    let name = map
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() || name.chars().count() > 100 {
        return keys_page(
            &state,
            &c,
            &p,
            StatusCode::UNPROCESSABLE_ENTITY,
            String::new(),
            "A key needs a name (at most 100 characters).".into(),
        )
        .await;
    }
    let (_, secret) = mint_key(&state, &c.access(&p), &name)
        .await
        .map_err(|_| WebError::Internal)?;
    keys_page(&state, &c, &p, StatusCode::CREATED, secret, String::new()).await
}

async fn revoke_api_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    c.require(Role::Editor)?;
    if !state.store().revoke_api_key(p.id, parse_id(&id)?).await? {
        return Err(WebError::NotFound);
    }
    Ok(see_other(&format!("/projects/{}/api-keys", p.slug)))
}

// ------------------------------------------------------------------ SIP accounts

struct RegistrarTab {
    id: i64,
    name: String,
    count: i64,
    active: bool,
}

struct AccountLine {
    id: i64,
    username: String,
    realm: String,
    extension: String,
}

struct PoolLine {
    id: i64,
    name: String,
    strategy: &'static str,
    size: usize,
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    layout: Layout,
    slug: String,
    registrars: Vec<RegistrarTab>,
    selected: i64,
    accounts: Vec<AccountLine>,
    pools: Vec<PoolLine>,
    strategies: Vec<Choice>,
    notice: String,
    errors: Vec<String>,
    form_username: String,
    form_realm: String,
    form_extension: String,
    form_csv: String,
}

/// What to put back into the forms after an error (never the password).
#[derive(Default)]
struct AccountsInput {
    username: String,
    realm: String,
    extension: String,
    csv: String,
}

#[allow(clippy::too_many_arguments)] // a page with its three optional states
async fn render_accounts(
    state: &AppState,
    c: &Ctx,
    p: &Project,
    selected: Option<i64>,
    status: StatusCode,
    notice: String,
    errors: Vec<String>,
    input: AccountsInput,
) -> WebResult {
    let custom: Vec<Registrar> = state
        .store()
        .registrars(p.id)
        .await?
        .into_iter()
        .filter(|r| r.kind == RegistrarKind::Custom)
        .collect();
    let selected = selected
        .filter(|id| custom.iter().any(|r| r.id == *id))
        .or(custom.first().map(|r| r.id))
        .unwrap_or(0);
    let mut registrars = Vec::new();
    for r in &custom {
        registrars.push(RegistrarTab {
            id: r.id,
            name: r.name.clone(),
            count: state.store().count_sip_accounts(r.id).await?,
            active: r.id == selected,
        });
    }
    let accounts = if selected > 0 {
        state
            .store()
            .sip_accounts(selected)
            .await?
            .into_iter()
            .map(|a| AccountLine {
                id: a.id,
                username: a.username,
                realm: a.realm.unwrap_or_default(),
                extension: a.extension.unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let pools = if selected > 0 {
        state
            .store()
            .account_pools(selected)
            .await?
            .into_iter()
            .map(|p| PoolLine {
                id: p.id,
                name: p.name,
                strategy: strategy_label(p.strategy),
                size: p.account_ids.len(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let strategies = Strategy::ALL
        .into_iter()
        .map(|s| Choice {
            value: s.as_str(),
            label: strategy_label(s),
            selected: false,
        })
        .collect();
    Ok(render(
        status,
        &AccountsPage {
            layout: c.layout(Some(p), "accounts"),
            slug: p.slug.clone(),
            registrars,
            selected,
            accounts,
            pools,
            strategies,
            notice,
            errors,
            form_username: input.username,
            form_realm: input.realm,
            form_extension: input.extension,
            form_csv: input.csv,
        },
    ))
}

async fn accounts_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    let selected = q.get("registrar").and_then(|v| v.parse().ok());
    let notice = match q.get("added") {
        Some(n) => format!("{n} account(s) added."),
        None if q.contains_key("deleted") => "Account deleted.".into(),
        None => String::new(),
    };
    render_accounts(
        &state,
        &c,
        &p,
        selected,
        StatusCode::OK,
        notice,
        Vec::new(),
        AccountsInput::default(),
    )
    .await
}

/// The registrar (custom, in this project) for an accounts form, with the editor checks done.
async fn accounts_target(
    state: &AppState,
    headers: &HeaderMap,
    slug: &str,
    rid: &str,
    map: &HashMap<String, String>,
) -> Result<(Ctx, Project, Registrar), WebError> {
    let (c, p) = project_ctx(state, headers, slug).await?;
    c.check_csrf(map)?;
    c.require(Role::Editor)?;
    let r = accounts_registrar(state, &c.access(&p), parse_id(rid)?)
        .await
        .map_err(|_| WebError::NotFound)?;
    Ok((c, p, r))
}

async fn finish_accounts(
    state: &AppState,
    c: &Ctx,
    p: &Project,
    r: &Registrar,
    rows: Vec<AccountRow>,
    input: AccountsInput,
) -> WebResult {
    match save_accounts(state, r, &rows).await {
        Ok(saved) => Ok(see_other(&format!(
            "/projects/{}/accounts?registrar={}&added={}",
            p.slug,
            r.id,
            saved.len()
        ))),
        Err(e) => {
            render_accounts(
                state,
                c,
                p,
                Some(r.id),
                StatusCode::CONFLICT,
                String::new(),
                vec![e.message().to_string()],
                input,
            )
            .await
        }
    }
}

async fn add_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, rid)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p, r) = accounts_target(&state, &headers, &slug, &rid, &map).await?;
    let get = |k: &str| map.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let row = AccountRow {
        username: get("username"),
        password: map.get("password").cloned().unwrap_or_default(),
        realm: Some(get("realm")).filter(|s| !s.is_empty()),
        extension: Some(get("extension")).filter(|s| !s.is_empty()),
    };
    let input = AccountsInput {
        username: get("username"),
        realm: get("realm"),
        extension: get("extension"),
        csv: String::new(),
    };
    if let Err(e) = check_row(&row) {
        return render_accounts(
            &state,
            &c,
            &p,
            Some(r.id),
            StatusCode::UNPROCESSABLE_ENTITY,
            String::new(),
            vec![e],
            input,
        )
        .await;
    }
    finish_accounts(&state, &c, &p, &r, vec![row], input).await
}

async fn bulk_accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, rid)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p, r) = accounts_target(&state, &headers, &slug, &rid, &map).await?;
    let csv = map.get("csv").cloned().unwrap_or_default();
    let input = AccountsInput {
        csv: csv.clone(),
        ..Default::default()
    };
    match parse_csv(&csv) {
        Ok(rows) => finish_accounts(&state, &c, &p, &r, rows, input).await,
        Err(errs) => {
            let errors = errs
                .into_iter()
                .map(|(n, m)| format!("Line {n}: {m}"))
                .collect();
            render_accounts(
                &state,
                &c,
                &p,
                Some(r.id),
                StatusCode::UNPROCESSABLE_ENTITY,
                String::new(),
                errors,
                input,
            )
            .await
        }
    }
}

async fn delete_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, rid, aid)): Path<(String, String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (_, p, r) = accounts_target(&state, &headers, &slug, &rid, &map).await?;
    if !state
        .store()
        .delete_sip_account(r.id, parse_id(&aid)?)
        .await?
    {
        return Err(WebError::NotFound);
    }
    Ok(see_other(&format!(
        "/projects/{}/accounts?registrar={}&deleted=1",
        p.slug, r.id
    )))
}

// ------------------------------------------------------------------ members and invitations

struct MemberRow {
    user_id: i64,
    email: String,
    role: &'static str,
    all_projects: bool,
    effective: String,
    is_self: bool,
    role_choices: Vec<Choice>,
    override_choices: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    layout: Layout,
    slug: String,
    members: Vec<MemberRow>,
    invite_roles: Vec<Choice>,
    pending: Vec<(i64, String)>,
    notice: String,
    error: String,
    invite_link: String,
}

fn role_choices(max: Role, selected: Role) -> Vec<Choice> {
    Role::ALL
        .into_iter()
        .filter(|r| *r <= max || *r == selected)
        .map(|r| Choice {
            value: r.as_str(),
            label: r.label(),
            selected: r == selected,
        })
        .collect()
}

async fn render_members(
    state: &AppState,
    c: &Ctx,
    p: &Project,
    status: StatusCode,
    notice: String,
    error: String,
    invite_link: String,
) -> WebResult {
    let overrides = state.store().project_overrides(p.id).await?;
    let mut members = Vec::new();
    for m in state.store().members(c.org.id).await? {
        let over = overrides
            .iter()
            .find(|(u, _)| *u == m.user_id)
            .map(|(_, r)| *r);
        let effective = state
            .store()
            .project_role(p.id, m.user_id)
            .await?
            .map(|r| r.label().to_string())
            .unwrap_or_else(|| "no access".into());
        let mut override_choices = vec![Choice {
            value: "",
            label: "— organization role",
            selected: over.is_none(),
        }];
        override_choices.extend(
            Role::ALL
                .into_iter()
                .filter(|r| *r < Role::Owner && *r <= c.org_role)
                .map(|r| Choice {
                    value: r.as_str(),
                    label: r.label(),
                    selected: over == Some(r),
                }),
        );
        members.push(MemberRow {
            user_id: m.user_id,
            email: m.email,
            role: m.role.label(),
            all_projects: m.all_projects,
            effective,
            is_self: m.user_id == c.user.id,
            role_choices: role_choices(c.org_role, m.role),
            override_choices,
        });
    }
    let pending = if c.org_role >= Role::Admin {
        state
            .store()
            .invitations(c.org.id, store::now_ms())
            .await?
            .into_iter()
            .map(|i| {
                let text = format!(
                    "{} as {}{} — expires {}",
                    i.email,
                    i.role.label(),
                    if i.project_id.is_some() {
                        " (one project)"
                    } else {
                        ""
                    },
                    certs::date(i.expires_at / 1000)
                );
                (i.id, text)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut layout = c.layout(Some(p), "members");
    layout.is_admin = c.org_role >= Role::Admin;
    let mut resp = render(
        status,
        &MembersPage {
            layout,
            slug: p.slug.clone(),
            members,
            invite_roles: role_choices(c.org_role, Role::Viewer),
            pending,
            notice,
            error,
            invite_link,
        },
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn members_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    render_members(
        &state,
        &c,
        &p,
        StatusCode::OK,
        String::new(),
        String::new(),
        String::new(),
    )
    .await
}

/// After a change to a member: back to the Members page, or the page again with the refusal.
async fn member_change_done(
    state: &AppState,
    c: &Ctx,
    p: &Project,
    result: Result<(), crate::members::MemberError>,
) -> WebResult {
    match result {
        Ok(()) => Ok(see_other(&format!("/projects/{}/members", p.slug))),
        Err(e) => {
            let msg = member_error(e)?;
            let no = String::new;
            render_members(state, c, p, StatusCode::FORBIDDEN, no(), msg, no()).await
        }
    }
}

fn member_error(e: crate::members::MemberError) -> Result<String, WebError> {
    match e {
        crate::members::MemberError::Store(e) => Err(e.into()),
        e => Ok(format!("Not changed: {e}.")),
    }
}

async fn update_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, uid)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    let uid = parse_id(&uid)?;
    let role = map.get("role").and_then(|r| Role::parse(r));
    let all = map.contains_key("allProjects");
    let over = map.get("override").and_then(|r| Role::parse(r));
    let result = async {
        crate::members::update_member(&state, c.org.id, c.org_role, uid, role, Some(all)).await?;
        crate::members::set_override(&state, c.org.id, c.org_role, p.id, uid, over).await
    }
    .await;
    member_change_done(&state, &c, &p, result).await
}

async fn remove_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, uid)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    let result = crate::members::remove_member(&state, c.org.id, c.org_role, parse_id(&uid)?).await;
    member_change_done(&state, &c, &p, result).await
}

async fn create_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    let email = map.get("email").cloned().unwrap_or_default();
    let role = map
        .get("role")
        .and_then(|r| Role::parse(r))
        .unwrap_or(Role::Viewer);
    let project = (map.get("scope").map(String::as_str) == Some("project")).then_some(p.id);
    match crate::members::invite(
        &state, c.org.id, c.org_role, c.user.id, &email, role, project,
    )
    .await
    {
        Ok((inv, token)) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let scheme = if state.secure_cookies() {
                "https"
            } else {
                "http"
            };
            let link = format!("{scheme}://{host}/invite/{token}");
            let notice = format!("Invitation for {} created.", inv.email);
            render_members(
                &state,
                &c,
                &p,
                StatusCode::CREATED,
                notice,
                String::new(),
                link,
            )
            .await
        }
        Err(e) => {
            let msg = member_error(e)?;
            render_members(
                &state,
                &c,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                String::new(),
                msg,
                String::new(),
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    csrf: String,
    token: String,
    org: String,
    role: &'static str,
    email: String,
    existing: bool,
    error: String,
}

async fn invite_context(
    state: &AppState,
    token: &str,
) -> Result<Option<(store::Invitation, Organization, Option<User>)>, WebError> {
    let Some(inv) = state
        .store()
        .open_invitation(&auth::token_hash(token), store::now_ms())
        .await?
    else {
        return Ok(None);
    };
    let user = state.store().user_by_email(&inv.email).await?;
    let org = state.store().organization(inv.org_id).await?;
    Ok(org.map(|o| (inv, o, user)))
}

fn invite_form(
    state: &AppState,
    status: StatusCode,
    token: &str,
    inv: &store::Invitation,
    org: &Organization,
    existing: bool,
    error: &str,
) -> Response {
    with_login_csrf(state, status, |csrf| {
        render(
            StatusCode::OK,
            &InvitePage {
                csrf,
                token: token.to_string(),
                org: org.name.clone(),
                role: inv.role.label(),
                email: inv.email.clone(),
                existing,
                error: error.to_string(),
            },
        )
    })
}

fn invalid_invite() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Invitation not valid",
        "This invitation link was already used, has expired, or was never issued. Ask for a new one.",
    )
}

async fn invite_page(State(state): State<AppState>, Path(token): Path<String>) -> WebResult {
    Ok(match invite_context(&state, &token).await? {
        Some((inv, org, user)) => invite_form(
            &state,
            StatusCode::OK,
            &token,
            &inv,
            &org,
            user.is_some(),
            "",
        ),
        None => invalid_invite(),
    })
}

async fn accept_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let Some((inv, org, user)) = invite_context(&state, &token).await? else {
        return Ok(invalid_invite());
    };
    let existing = user.is_some();
    let fail =
        |status, error: &str| invite_form(&state, status, &token, &inv, &org, existing, error);
    if !login_csrf_ok(&headers, &map) {
        return Ok(fail(
            StatusCode::FORBIDDEN,
            "The form expired. Please submit it again.",
        ));
    }
    let password = map.get("password").cloned().unwrap_or_default();
    let accepted = match &user {
        Some(u) => {
            // Joining with an existing account needs its password (same limiter as sign-in).
            if state.limiter().locked(&u.email, Instant::now()).is_some() {
                return Ok(fail(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts. Try again later.",
                ));
            }
            let phc = u.password_hash.clone();
            let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc))
                .await
                .unwrap_or(false);
            if !ok {
                state.limiter().fail(&u.email, Instant::now());
                return Ok(fail(StatusCode::UNAUTHORIZED, "Wrong password."));
            }
            state
                .store()
                .accept_invitation(&inv, Some(u.id), None)
                .await?
        }
        None => {
            let name = map
                .get("name")
                .map(|n| n.trim().to_string())
                .unwrap_or_default();
            if name.is_empty() || name.chars().count() > 100 {
                return Ok(fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Please enter your name (at most 100 characters).",
                ));
            }
            if let Err(m) = crate::check_credentials(&inv.email, &password) {
                return Ok(fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &m.replace("the admin ", "The "),
                ));
            }
            let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
                .await
                .map_err(|_| WebError::Internal)?
                .map_err(|_| WebError::Internal)?;
            state
                .store()
                .accept_invitation(&inv, None, Some((&name, &hash)))
                .await?
        }
    };
    match accepted {
        Some(user_id) => start_session(&state, user_id, "/").await,
        None => Ok(invalid_invite()),
    }
}

fn strategy_label(s: Strategy) -> &'static str {
    match s {
        Strategy::Sequential => "Sequential",
        Strategy::RoundRobin => "Round robin across runs",
        Strategy::Random => "Random",
        Strategy::LeastRecentlyUsed => "Least recently used",
    }
}

async fn create_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, rid)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p, r) = accounts_target(&state, &headers, &slug, &rid, &map).await?;
    let name = map
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    let strategy = map.get("strategy").and_then(|s| Strategy::parse(s));
    let (Some(strategy), false) = (strategy, name.is_empty() || name.chars().count() > 100) else {
        let error = "A pool needs a name (at most 100 characters) and a strategy.".to_string();
        return render_accounts(
            &state,
            &c,
            &p,
            Some(r.id),
            StatusCode::UNPROCESSABLE_ENTITY,
            String::new(),
            vec![error],
            AccountsInput::default(),
        )
        .await;
    };
    let ids: Vec<i64> = state
        .store()
        .sip_accounts(r.id)
        .await?
        .iter()
        .map(|a| a.id)
        .collect();
    match state.store().create_pool(r.id, &name, strategy, &ids).await {
        Ok(_) => Ok(see_other(&format!(
            "/projects/{}/accounts?registrar={}",
            p.slug, r.id
        ))),
        Err(StoreError::Conflict(_)) => {
            let error = format!("A pool named {name} already exists on this registrar.");
            render_accounts(
                &state,
                &c,
                &p,
                Some(r.id),
                StatusCode::CONFLICT,
                String::new(),
                vec![error],
                AccountsInput::default(),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, rid, pid)): Path<(String, String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (_, p, r) = accounts_target(&state, &headers, &slug, &rid, &map).await?;
    if !state.store().delete_pool(r.id, parse_id(&pid)?).await? {
        return Err(WebError::NotFound);
    }
    Ok(see_other(&format!(
        "/projects/{}/accounts?registrar={}",
        p.slug, r.id
    )))
}

/// Shows another organization the user belongs to.
async fn switch_org(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let c = ctx(&state, &headers).await?;
    c.check_csrf(&map)?;
    let id = parse_id(&id)?;
    if id != c.org.id && !c.other_orgs.iter().any(|(o, _)| *o == id) {
        return Err(WebError::NotFound);
    }
    let mut resp = see_other("/");
    let cookie = auth::set_cookie(
        ORG_COOKIE,
        &id.to_string(),
        auth::SESSION_TTL_MS / 1000,
        "Lax",
        state.secure_cookies(),
    );
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn revoke_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(map): Form<HashMap<String, String>>,
) -> WebResult {
    let (c, p) = project_ctx(&state, &headers, &slug).await?;
    c.check_csrf(&map)?;
    if c.org_role < Role::Admin {
        return Err(WebError::Forbidden(Role::Admin));
    }
    if !state
        .store()
        .revoke_invitation(c.org.id, parse_id(&id)?)
        .await?
    {
        return Err(WebError::NotFound);
    }
    Ok(see_other(&format!("/projects/{}/members", p.slug)))
}
