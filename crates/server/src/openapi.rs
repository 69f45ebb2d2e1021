//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`.
//!
//! Written by hand (no derive framework in the build) and kept honest by a test that compares
//! its operations with the router's and by the API tests that exercise each one.

use serde_json::{Value, json};

fn envelope(data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["data", "meta"],
        "properties": {
            "data": data,
            "meta": { "$ref": "#/components/schemas/Meta" }
        }
    })
}

fn ok(description: &str, data: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": envelope(data) } } })
}

/// Error answers of an operation (every operation can also answer 429).
fn errors(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for code in codes.iter().chain(&["429"]) {
        let description = match *code {
            "400" => "BAD_REQUEST: malformed JSON or query parameter",
            "401" => "UNAUTHENTICATED: no session and no valid API key",
            "403" => "FORBIDDEN: the caller's role is too low",
            "404" => "NOT_FOUND: no such resource, or not visible to the caller",
            "409" => "CONFLICT, BUILTIN_READ_ONLY or BUILTIN_NO_ACCOUNTS",
            "415" => "UNSUPPORTED_MEDIA_TYPE: writes must be application/json",
            "422" => "VALIDATION_FAILED: `fields` names each invalid field",
            "504" => "CHECK_TIMEOUT: the check did not finish within its limit",
            "429" => "RATE_LIMITED: over the per-credential request rate (see Retry-After)",
            _ => "error",
        };
        m.insert(
            (*code).to_string(),
            json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
        );
    }
    Value::Object(m)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn id_param(name: &str, what: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": what, "schema": { "type": "integer", "format": "int64" } })
}

fn paging() -> Vec<Value> {
    vec![
        json!({ "name": "page", "in": "query", "schema": { "type": "integer", "minimum": 1, "default": 1 } }),
        json!({ "name": "perPage", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 } }),
    ]
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn r(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

fn list(schema: &str) -> Value {
    json!({ "type": "array", "items": r(schema) })
}

/// The document.
pub fn document() -> Value {
    let project = id_param("id", "project id");
    let rid = id_param("rid", "registrar id");
    let kid = id_param("kid", "API key id");
    let mut list_params = vec![project.clone()];
    list_params.extend(paging());
    let mut acc_list_params = vec![project.clone(), rid.clone()];
    acc_list_params.extend(paging());
    let check_input = json!({ "type": "object", "properties": {
                    "account": { "type": ["integer", "null"], "description": "one of the registrar's SIP account ids; omit for the built-in registrar or an unauthenticated REGISTER" } } });
    let check_report = json!({ "type": "object", "properties": {
                    "registrationUri": { "type": "string" }, "server": { "type": ["string", "null"] },
                    "transport": { "type": ["string", "null"] }, "registered": { "type": "boolean" },
                    "finalCode": { "type": ["integer", "null"] }, "hint": { "type": ["string", "null"] },
                    "steps": { "type": "array", "items": { "type": "object", "properties": {
                        "name": { "type": "string", "enum": ["dns", "transport", "tls", "websocket", "register", "auth"] },
                        "status": { "type": "string", "enum": ["ok", "failed", "skipped"] },
                        "elapsedMs": { "type": "number" }, "detail": { "type": "string" } } } },
                    "trace": { "type": "array", "items": { "type": "object", "properties": {
                        "direction": { "type": "string", "enum": ["sent", "received", "note"] },
                        "atMs": { "type": "number" }, "wallMs": { "type": "integer" },
                        "transport": { "type": ["string", "null"] }, "local": { "type": ["string", "null"] },
                        "remote": { "type": ["string", "null"] }, "retransmission": { "type": "boolean" },
                        "text": { "type": "string" } } } } } });
    let check_path = json!({
                "post": { "operationId": "checkRegistrar", "summary": "Check connectivity (Tester+): DNS → transport → REGISTER answered → authenticated, with the registrar's settings and the account's credentials (none for the built-in registrar, which is started on loopback for the check); 200 whatever the registrar answered, `registered` says; 422 CHECK_SETUP_FAILED when stored TLS material or secrets cannot be used",
                    "parameters": [project.clone(), rid.clone()], "requestBody": body("CheckInput"),
                    "responses": merge(json!({ "200": ok("the checklist", r("CheckReport")) }), errors(&["400", "401", "403", "404", "409", "415", "422", "504"])) }
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sipmeter API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every answer is {data, meta:{requestId, pagination?}}; every error is {error:{code, message, fields?}}. Authenticate with `Authorization: Bearer <API key>` (scoped to one project, carrying its creator's role) or the web session cookie."
        },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "apiKey": [] }, { "session": [] }],
        "paths": {
            "/me": { "get": { "operationId": "getMe", "summary": "The signed-in user and their organizations (session only)",
                "responses": merge(json!({ "200": ok("the user", json!({ "type": "object" })) }), errors(&["401"])) } },
            "/projects": {
                "get": { "operationId": "listProjects", "summary": "Projects visible to the caller (an API key sees its own project)",
                    "parameters": paging(),
                    "responses": merge(json!({ "200": ok("projects", list("Project")) }), errors(&["400", "401"])) },
                "post": { "operationId": "createProject", "summary": "Create a project (Admin+, session only); its slug is generated and never changes",
                    "requestBody": body("ProjectInput"),
                    "responses": merge(json!({ "201": ok("created", r("Project")) }), errors(&["401", "403", "404", "415", "422"])) }
            },
            "/projects/{id}": { "get": { "operationId": "getProject", "summary": "A project, with the caller's role in it",
                "parameters": [project.clone()],
                "responses": merge(json!({ "200": ok("the project", r("Project")) }), errors(&["401", "404"])) } },
            "/projects/{id}/registrars": {
                "get": { "operationId": "listRegistrars", "summary": "Registrars of a project (Viewer+)",
                    "parameters": list_params.clone(),
                    "responses": merge(json!({ "200": ok("registrars", list("Registrar")) }), errors(&["400", "401", "404"])) },
                "post": { "operationId": "createRegistrar", "summary": "Create a registrar (Editor+); every field is validated, nothing invalid is saved",
                    "parameters": [project.clone()],
                    "requestBody": body("RegistrarInput"),
                    "responses": merge(json!({ "201": ok("created (with warnings, e.g. a certificate expiring within 30 days)", r("Registrar")) }), errors(&["400", "401", "403", "404", "415", "422"])) }
            },
            "/projects/{id}/registrars/{rid}": {
                "get": { "operationId": "getRegistrar", "parameters": [project.clone(), rid.clone()],
                    "responses": merge(json!({ "200": ok("the registrar", r("Registrar")) }), errors(&["401", "404"])) },
                "put": { "operationId": "updateRegistrar", "summary": "Replace a registrar's configuration (Editor+); a blank tlsKeyPem with a certificate keeps the stored key",
                    "parameters": [project.clone(), rid.clone()], "requestBody": body("RegistrarInput"),
                    "responses": merge(json!({ "200": ok("updated", r("Registrar")) }), errors(&["400", "401", "403", "404", "409", "415", "422"])) },
                "delete": { "operationId": "deleteRegistrar", "parameters": [project.clone(), rid.clone()],
                    "responses": merge(json!({ "200": ok("deleted", json!({ "type": "object" })) }), errors(&["401", "403", "404"])) }
            },
            "/projects/{id}/registrars/{rid}/accounts": {
                "get": { "operationId": "listSipAccounts", "summary": "SIP accounts of a registrar (Viewer+); passwords are never returned",
                    "parameters": acc_list_params,
                    "responses": merge(json!({ "200": ok("accounts", list("SipAccount")) }), errors(&["400", "401", "404", "409"])) },
                "post": { "operationId": "addSipAccount", "summary": "Add one account (Editor+); the password is encrypted at rest",
                    "parameters": [project.clone(), rid.clone()], "requestBody": body("SipAccountInput"),
                    "responses": merge(json!({ "201": ok("added", r("SipAccount")) }), errors(&["401", "403", "404", "409", "415", "422"])) }
            },
            "/projects/{id}/registrars/{rid}/accounts/bulk": {
                "post": { "operationId": "bulkAddSipAccounts", "summary": "Add accounts from CSV (username,password[,realm[,extension]]) or a numeric range; errors per line, nothing saved on error",
                    "parameters": [project.clone(), rid.clone()], "requestBody": body("SipAccountBulk"),
                    "responses": merge(json!({ "201": ok("added", json!({ "type": "object", "properties": {
                        "created": { "type": "integer" }, "accounts": list("SipAccount") } })) }), errors(&["400", "401", "403", "404", "409", "415", "422"])) }
            },
            "/projects/{id}/registrars/{rid}/accounts/{aid}": {
                "delete": { "operationId": "deleteSipAccount", "parameters": [project.clone(), rid.clone(), id_param("aid", "account id")],
                    "responses": merge(json!({ "200": ok("deleted", json!({ "type": "object" })) }), errors(&["401", "403", "404", "409"])) }
            },
            "/projects/{id}/registrars/{rid}/pools": {
                "get": { "operationId": "listPools", "summary": "Account pools of a registrar (Viewer+)",
                    "parameters": [project.clone(), rid.clone()],
                    "responses": merge(json!({ "200": ok("pools", list("AccountPool")) }), errors(&["401", "404", "409"])) },
                "post": { "operationId": "createPool", "summary": "Create a pool (Editor+) from accountIds or allAccounts, with a rotation strategy",
                    "parameters": [project.clone(), rid.clone()], "requestBody": body("AccountPoolInput"),
                    "responses": merge(json!({ "201": ok("created", r("AccountPool")) }), errors(&["401", "403", "404", "409", "415", "422"])) }
            },
            "/projects/{id}/registrars/{rid}/pools/{pid}": {
                "get": { "operationId": "getPool", "parameters": [project.clone(), rid.clone(), id_param("pid", "pool id")],
                    "responses": merge(json!({ "200": ok("the pool", r("AccountPool")) }), errors(&["401", "404", "409"])) },
                "put": { "operationId": "updatePool", "summary": "Rename, change strategy, replace accounts (Editor+)",
                    "parameters": [project.clone(), rid.clone(), id_param("pid", "pool id")], "requestBody": body("AccountPoolInput"),
                    "responses": merge(json!({ "200": ok("updated", r("AccountPool")) }), errors(&["401", "403", "404", "409", "415", "422"])) },
                "delete": { "operationId": "deletePool", "summary": "Delete a pool (its accounts stay)",
                    "parameters": [project.clone(), rid.clone(), id_param("pid", "pool id")],
                    "responses": merge(json!({ "200": ok("deleted", json!({ "type": "object" })) }), errors(&["401", "403", "404", "409"])) }
            },
            "/orgs/{oid}/members": {
                "get": { "operationId": "listMembers", "summary": "Members of an organization (any member; session only)",
                    "parameters": [id_param("oid", "organization id")],
                    "responses": merge(json!({ "200": ok("members", list("Member")) }), errors(&["401", "403", "404"])) }
            },
            "/orgs/{oid}/members/{uid}": {
                "put": { "operationId": "updateMember", "summary": "Change a member's role and/or scope (Admin+; only an Owner touches Owner; the last Owner stays)",
                    "parameters": [id_param("oid", "organization id"), id_param("uid", "user id")], "requestBody": body("MemberUpdate"),
                    "responses": merge(json!({ "200": ok("the member", r("Member")) }), errors(&["401", "403", "404", "409", "415", "422"])) },
                "delete": { "operationId": "removeMember", "parameters": [id_param("oid", "organization id"), id_param("uid", "user id")],
                    "responses": merge(json!({ "200": ok("removed", json!({ "type": "object" })) }), errors(&["401", "403", "404", "409"])) }
            },
            "/orgs/{oid}/invitations": {
                "get": { "operationId": "listInvitations", "summary": "Open invitations (Admin+)", "parameters": [id_param("oid", "organization id")],
                    "responses": merge(json!({ "200": ok("invitations", list("Invitation")) }), errors(&["401", "403", "404"])) },
                "post": { "operationId": "createInvitation", "summary": "Invite by link (Admin+); `path` (/invite/TOKEN) is in this answer only; with projectId the role applies to that project only",
                    "parameters": [id_param("oid", "organization id")], "requestBody": body("InvitationInput"),
                    "responses": merge(json!({ "201": ok("created", r("Invitation")) }), errors(&["401", "403", "404", "415", "422"])) }
            },
            "/orgs/{oid}/invitations/{iid}": {
                "delete": { "operationId": "revokeInvitation", "summary": "Revoke an open invitation (Admin+)",
                    "parameters": [id_param("oid", "organization id"), id_param("iid", "invitation id")],
                    "responses": merge(json!({ "200": ok("revoked", json!({ "type": "object" })) }), errors(&["401", "403", "404"])) }
            },
            "/projects/{id}/members/{uid}": {
                "put": { "operationId": "setProjectRole", "summary": "Set ({\"role\": \"editor\"}) or clear ({\"role\": null}) a member's role override in this project (organization Admin+)",
                    "parameters": [project.clone(), id_param("uid", "user id")], "requestBody": body("ProjectRoleInput"),
                    "responses": merge(json!({ "200": ok("the effective role", json!({ "type": "object" })) }), errors(&["401", "403", "404", "415", "422"])) }
            },
            "/projects/{id}/api-keys": {
                "get": { "operationId": "listApiKeys", "summary": "API keys of a project (Editor+); keys themselves are never listed",
                    "parameters": list_params,
                    "responses": merge(json!({ "200": ok("keys", list("ApiKey")) }), errors(&["400", "401", "403", "404"])) },
                "post": { "operationId": "createApiKey", "summary": "Create an API key (Editor+, signed-in user); `key` is in this answer only",
                    "parameters": [project.clone()], "requestBody": body("ApiKeyInput"),
                    "responses": merge(json!({ "201": ok("created", r("ApiKey")) }), errors(&["401", "403", "404", "415", "422"])) }
            },
            "/projects/{id}/api-keys/{kid}": {
                "delete": { "operationId": "revokeApiKey", "parameters": [project, kid],
                    "responses": merge(json!({ "200": ok("revoked", json!({ "type": "object" })) }), errors(&["401", "403", "404"])) }
            }
        },
        "components": {
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "smk_… API key" },
                "session": { "type": "apiKey", "in": "cookie", "name": "sipmeter_session" }
            },
            "schemas": {
                "Meta": { "type": "object", "required": ["requestId"], "properties": {
                    "requestId": { "type": "string" },
                    "pagination": { "type": "object", "properties": {
                        "page": { "type": "integer" }, "perPage": { "type": "integer" }, "total": { "type": "integer" } } } } },
                "Error": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string", "enum": ["BAD_REQUEST", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "CONFLICT",
                            "BUILTIN_READ_ONLY", "BUILTIN_NO_ACCOUNTS", "LAST_OWNER", "UNSUPPORTED_MEDIA_TYPE", "VALIDATION_FAILED", "RATE_LIMITED", "INTERNAL"] },
                        "message": { "type": "string" },
                        "fields": { "type": "array", "items": { "type": "object", "properties": {
                            "field": { "type": "string" }, "message": { "type": "string" } } } } } },
                    "meta": { "$ref": "#/components/schemas/Meta" } } },
                "Project": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "orgId": { "type": "integer" }, "name": { "type": "string" },
                    "slug": { "type": "string" }, "createdAt": { "type": "integer", "description": "unix ms" } } },
                "ProjectInput": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string", "maxLength": 100 }, "organizationId": { "type": "integer" } } },
                "RegistrarInput": { "type": "object", "required": ["name", "domain", "transport"], "properties": {
                    "name": { "type": "string", "maxLength": 100 },
                    "domain": { "type": "string", "description": "host name or IPv4/IPv6 literal, no port" },
                    "port": { "type": ["integer", "string", "null"], "minimum": 1, "maximum": 65535, "description": "blank/null = the transport's default (UDP/TCP 5060, TLS 5061, WSS 443)" },
                    "transport": { "type": "string", "enum": ["UDP", "TCP", "TLS", "WSS", "AUTO"] },
                    "outboundProxy": { "type": ["string", "null"], "description": "host[:port]" },
                    "tlsVerify": { "type": "string", "enum": ["system", "custom", "skip"] },
                    "tlsCaPem": { "type": ["string", "null"] },
                    "tlsCertPem": { "type": ["string", "null"] },
                    "tlsKeyPem": { "type": ["string", "null"], "writeOnly": true } } },
                "Registrar": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "projectId": { "type": "integer" },
                    "kind": { "type": "string", "enum": ["custom", "builtin"] },
                    "name": { "type": "string" }, "domain": { "type": "string" },
                    "port": { "type": ["integer", "null"] }, "effectivePort": { "type": ["integer", "null"] },
                    "transport": { "type": "string" }, "outboundProxy": { "type": ["string", "null"] },
                    "registrationUri": { "type": "string", "examples": ["sip:pbx.corp.net:5061;transport=tls"] },
                    "dnsDiscovery": { "type": "boolean" },
                    "tlsVerify": { "type": "string" }, "tlsCaPem": { "type": ["string", "null"] },
                    "tlsCertPem": { "type": ["string", "null"] }, "hasTlsKey": { "type": "boolean" },
                    "warnings": { "type": "array", "items": { "type": "object" } },
                    "createdAt": { "type": "integer" }, "updatedAt": { "type": "integer" } } },
                "SipAccountInput": { "type": "object", "required": ["username", "password"], "properties": {
                    "username": { "type": "string", "maxLength": 64 }, "password": { "type": "string", "maxLength": 128, "writeOnly": true },
                    "realm": { "type": ["string", "null"] }, "extension": { "type": ["string", "null"] } } },
                "SipAccountBulk": { "type": "object", "properties": {
                    "csv": { "type": "string", "description": "username,password[,realm[,extension]] per line; # comments" },
                    "range": { "type": "object", "required": ["from", "to", "passwordTemplate"], "properties": {
                        "from": { "type": "integer" }, "to": { "type": "integer" }, "width": { "type": "integer" },
                        "usernameTemplate": { "type": "string", "default": "{n}" }, "passwordTemplate": { "type": "string" },
                        "realm": { "type": "string" } } } } },
                "SipAccount": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "registrarId": { "type": "integer" }, "username": { "type": "string" },
                    "realm": { "type": ["string", "null"] }, "extension": { "type": ["string", "null"] },
                    "hasPassword": { "type": "boolean" }, "createdAt": { "type": "integer" } } },
                "AccountPoolInput": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string", "maxLength": 100 },
                    "strategy": { "type": "string", "enum": ["sequential", "round_robin", "random", "least_recently_used"], "default": "sequential" },
                    "accountIds": { "type": "array", "items": { "type": "integer" } },
                    "allAccounts": { "type": "boolean" } } },
                "AccountPool": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "registrarId": { "type": "integer" }, "name": { "type": "string" },
                    "strategy": { "type": "string" }, "nextIndex": { "type": "integer" },
                    "accountIds": { "type": "array", "items": { "type": "integer" } }, "createdAt": { "type": "integer" } } },
                "Member": { "type": "object", "properties": {
                    "userId": { "type": "integer" }, "email": { "type": "string" }, "name": { "type": "string" },
                    "role": { "type": "string", "enum": ["viewer", "tester", "editor", "admin", "owner"] },
                    "allProjects": { "type": "boolean" } } },
                "MemberUpdate": { "type": "object", "properties": {
                    "role": { "type": "string", "enum": ["viewer", "tester", "editor", "admin", "owner"] },
                    "allProjects": { "type": "boolean" } } },
                "ProjectRoleInput": { "type": "object", "required": ["role"], "properties": {
                    "role": { "type": ["string", "null"], "enum": ["viewer", "tester", "editor", "admin", null] } } },
                "InvitationInput": { "type": "object", "required": ["email"], "properties": {
                    "email": { "type": "string" }, "role": { "type": "string", "default": "viewer" },
                    "projectId": { "type": ["integer", "null"] } } },
                "Invitation": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "orgId": { "type": "integer" }, "email": { "type": "string" },
                    "role": { "type": "string" }, "projectId": { "type": ["integer", "null"] },
                    "path": { "type": "string", "description": "only in the create answer" },
                    "createdBy": { "type": "integer" }, "createdAt": { "type": "integer" }, "expiresAt": { "type": "integer" } } },
                "ApiKeyInput": { "type": "object", "required": ["name"], "properties": { "name": { "type": "string", "maxLength": 100 } } },
                "ApiKey": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "projectId": { "type": "integer" }, "name": { "type": "string" },
                    "prefix": { "type": "string" }, "role": { "type": "string", "enum": ["viewer", "tester", "editor", "admin", "owner"] },
                    "key": { "type": "string", "description": "only in the create answer" },
                    "createdBy": { "type": "integer" }, "createdAt": { "type": "integer" }, "revokedAt": { "type": ["integer", "null"] } } }
            }
        }
    });
    // Added outside the literal above, which is at the json! macro's recursion limit.
    doc["paths"]["/projects/{id}/registrars/{rid}/check"] = check_path;
    doc["components"]["schemas"]["CheckInput"] = check_input;
    doc["components"]["schemas"]["CheckReport"] = check_report;
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_documented_with_its_refs_resolved() {
        let doc = document();
        let mut ops: Vec<String> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        ops.sort();
        // The router's operations (crate::api::routes).
        let mut expected = vec![
            "GET /me",
            "GET /projects",
            "POST /projects",
            "GET /projects/{id}",
            "GET /projects/{id}/registrars",
            "POST /projects/{id}/registrars",
            "GET /projects/{id}/registrars/{rid}",
            "PUT /projects/{id}/registrars/{rid}",
            "DELETE /projects/{id}/registrars/{rid}",
            "GET /projects/{id}/registrars/{rid}/accounts",
            "POST /projects/{id}/registrars/{rid}/accounts",
            "POST /projects/{id}/registrars/{rid}/accounts/bulk",
            "POST /projects/{id}/registrars/{rid}/check",
            "DELETE /projects/{id}/registrars/{rid}/accounts/{aid}",
            "GET /projects/{id}/registrars/{rid}/pools",
            "POST /projects/{id}/registrars/{rid}/pools",
            "GET /projects/{id}/registrars/{rid}/pools/{pid}",
            "PUT /projects/{id}/registrars/{rid}/pools/{pid}",
            "DELETE /projects/{id}/registrars/{rid}/pools/{pid}",
            "GET /orgs/{oid}/members",
            "PUT /orgs/{oid}/members/{uid}",
            "DELETE /orgs/{oid}/members/{uid}",
            "GET /orgs/{oid}/invitations",
            "POST /orgs/{oid}/invitations",
            "DELETE /orgs/{oid}/invitations/{iid}",
            "PUT /projects/{id}/members/{uid}",
            "GET /projects/{id}/api-keys",
            "POST /projects/{id}/api-keys",
            "DELETE /projects/{id}/api-keys/{kid}",
        ];
        expected.sort();
        assert_eq!(ops, expected);
        // Every $ref points at a defined schema.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "undefined schema {name}");
        }
    }
}
