//! Members, scopes, per-project overrides and invitations by link, over a real socket.

mod common;

use common::{Auth, TestServer, api, cookie_pair, csrf_of, form, http, sign_in};
use serde_json::json;
use store::Role;

const FORM: &str = "application/x-www-form-urlencoded";

/// Opens an invitation link and submits the form; returns the answer.
async fn accept(s: &TestServer, path: &str, name: Option<&str>, password: &str) -> common::Resp {
    let page = http(s.addr, "GET", path, &[], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let c = cookie_pair(&page, "sipmeter_login_csrf").unwrap();
    let csrf = csrf_of(&page.body);
    let mut fields = vec![("csrf", csrf.as_str()), ("password", password)];
    if let Some(n) = name {
        fields.push(("name", n));
    }
    http(
        s.addr,
        "POST",
        path,
        &[("Cookie", &c), ("Content-Type", FORM)],
        &form(&fields),
    )
    .await
}

async fn invite(s: &TestServer, cookie: &str, body: serde_json::Value) -> common::Resp {
    api(
        s.addr,
        "POST",
        &format!("/api/v1/orgs/{}/invitations", s.boot.org.id),
        &Auth::Cookie(cookie),
        Some(&body),
    )
    .await
}

#[tokio::test]
async fn invitation_links_create_members_once() {
    let s = TestServer::start("invite").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let second = s
        .store
        .create_project(s.boot.org.id, "Second")
        .await
        .unwrap();

    // An Editor for all projects.
    let r = invite(
        &s,
        &owner.cookie,
        json!({ "email": "Ed@Example.com", "role": "editor" }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = r.json()["data"]["path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/invite/") && path.len() == "/invite/".len() + 64);
    let open = api(
        s.addr,
        "GET",
        &format!("/api/v1/orgs/{}/invitations", s.boot.org.id),
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await;
    assert_eq!(open.json()["data"][0]["email"], "ed@example.com");
    assert!(!open.body.contains(&path[8..]), "the token is not listed");

    let short = accept(&s, &path, Some("Ed"), "short").await;
    assert_eq!(short.status, 422);
    let ok = accept(&s, &path, Some("Ed"), "editor password").await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let ed = cookie_pair(&ok, "sipmeter_session").unwrap();
    let created = api(
        s.addr,
        "POST",
        &format!("/api/v1/projects/{}/registrars", second.id),
        &Auth::Cookie(&ed),
        Some(&json!({ "name": "R", "domain": "sip.example.com", "transport": "UDP" })),
    )
    .await;
    assert_eq!(created.status, 201, "an Editor in every project");
    // Used once.
    assert_eq!(http(s.addr, "GET", &path, &[], "").await.status, 404);
    // The chosen password signs in (sign_in asserts the redirect and the session).
    sign_in(s.addr, "ed@example.com", "editor password").await;

    // A Viewer for one project only: sees that project alone, 404 elsewhere.
    let r = invite(
        &s,
        &owner.cookie,
        json!({ "email": "vic@example.com", "role": "viewer", "projectId": second.id }),
    )
    .await;
    let path = r.json()["data"]["path"].as_str().unwrap().to_string();
    let ok = accept(&s, &path, Some("Vic"), "viewer password").await;
    let vic = cookie_pair(&ok, "sipmeter_session").unwrap();
    let projects = api(s.addr, "GET", "/api/v1/projects", &Auth::Cookie(&vic), None)
        .await
        .json();
    let names: Vec<&str> = projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Second"]);
    let demo = api(
        s.addr,
        "GET",
        &format!("/api/v1/projects/{}/registrars", s.boot.demo.id),
        &Auth::Cookie(&vic),
        None,
    )
    .await;
    assert_eq!(demo.status, 404);
    let page = http(
        s.addr,
        "GET",
        "/projects/second/registrars",
        &[("Cookie", &vic)],
        "",
    )
    .await;
    assert!(
        page.body.contains("data-project=\"second\"")
            && !page.body.contains("data-project=\"demo\"")
    );
    assert_eq!(
        http(
            s.addr,
            "GET",
            "/projects/demo/registrars",
            &[("Cookie", &vic)],
            ""
        )
        .await
        .status,
        404
    );

    // An existing account joins with its own password.
    let other_org = s.store.create_organization("Elsewhere").await.unwrap();
    let hash = server::auth::hash_password(common::PASSWORD).unwrap();
    let x = s
        .store
        .create_user("x@example.com", "X", &hash)
        .await
        .unwrap();
    s.store
        .set_member(other_org.id, x.id, Role::Owner)
        .await
        .unwrap();
    let r = invite(
        &s,
        &owner.cookie,
        json!({ "email": "x@example.com", "role": "tester" }),
    )
    .await;
    let path = r.json()["data"]["path"].as_str().unwrap().to_string();
    let page = http(s.addr, "GET", &path, &[], "").await;
    assert!(page.body.contains("You already have an account"));
    assert_eq!(accept(&s, &path, None, "wrong password!").await.status, 401);
    assert_eq!(accept(&s, &path, None, common::PASSWORD).await.status, 303);
    assert_eq!(
        s.store.member_role(s.boot.org.id, x.id).await.unwrap(),
        Some(Role::Tester)
    );
    assert_eq!(
        s.store.member_role(other_org.id, x.id).await.unwrap(),
        Some(Role::Owner)
    );

    // X now belongs to two organizations: the UI shows the first joined and switches.
    let xs = sign_in(s.addr, "x@example.com", common::PASSWORD).await;
    let page = http(s.addr, "GET", "/projects", &[("Cookie", &xs.cookie)], "").await;
    assert!(page.body.contains("<div class=\"org\">Elsewhere</div>"));
    assert!(page.body.contains("Switch to Acme Telecom"));
    let r = http(
        s.addr,
        "POST",
        &format!("/orgs/{}/switch", s.boot.org.id),
        &[("Cookie", &xs.cookie), ("Content-Type", FORM)],
        &form(&[("csrf", &xs.csrf)]),
    )
    .await;
    assert_eq!(r.status, 303);
    let org_cookie = cookie_pair(&r, "sipmeter_org").unwrap();
    let both = format!("{}; {org_cookie}", xs.cookie);
    let page = http(s.addr, "GET", "/projects", &[("Cookie", &both)], "").await;
    assert!(page.body.contains("<div class=\"org\">Acme Telecom</div>"));
    assert!(page.body.contains("data-project=\"demo\""));
    // Switching to an organization one is not in is refused.
    let r = http(
        s.addr,
        "POST",
        "/orgs/999999/switch",
        &[("Cookie", &xs.cookie), ("Content-Type", FORM)],
        &form(&[("csrf", &xs.csrf)]),
    )
    .await;
    assert_eq!(r.status, 404);

    assert_eq!(
        http(s.addr, "GET", "/invite/not-a-token", &[], "")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn role_rules_and_overrides() {
    let s = TestServer::start("roles").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let admin_user = s.add_user("admin@example.com", Role::Admin).await;
    let viewer_user = s.add_user("viewer@example.com", Role::Viewer).await;
    let admin = sign_in(s.addr, "admin@example.com", common::PASSWORD).await;
    let viewer = sign_in(s.addr, "viewer@example.com", common::PASSWORD).await;
    let org = s.boot.org.id;
    let member = |uid: i64| format!("/api/v1/orgs/{org}/members/{uid}");
    let put = |cookie: String, path: String, body: serde_json::Value| async move {
        api(s.addr, "PUT", &path, &Auth::Cookie(&cookie), Some(&body)).await
    };

    // Everyone in the organization sees the member list; outsiders get 404; keys get 403.
    let list = api(
        s.addr,
        "GET",
        &format!("/api/v1/orgs/{org}/members"),
        &Auth::Cookie(&viewer.cookie),
        None,
    )
    .await;
    assert_eq!(list.json()["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        api(
            s.addr,
            "GET",
            "/api/v1/orgs/999/members",
            &Auth::Cookie(&viewer.cookie),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        api(
            s.addr,
            "GET",
            &format!("/api/v1/orgs/{org}/members"),
            &Auth::Key("smk_x"),
            None
        )
        .await
        .status,
        403
    );

    // Viewers manage nothing; Admins cannot grant or touch Owner; the last Owner stays.
    assert_eq!(
        put(
            viewer.cookie.clone(),
            member(admin_user.id),
            json!({ "role": "viewer" })
        )
        .await
        .status,
        403
    );
    assert_eq!(
        invite(&s, &viewer.cookie, json!({ "email": "a@example.com" }))
            .await
            .status,
        403
    );
    let r = put(
        admin.cookie.clone(),
        member(viewer_user.id),
        json!({ "role": "owner" }),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["message"].clone()),
        (403, json!("you cannot grant a role above your own"))
    );
    let r = put(
        admin.cookie.clone(),
        member(s.boot.user.id),
        json!({ "role": "viewer" }),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = api(
        s.addr,
        "DELETE",
        &member(s.boot.user.id),
        &Auth::Cookie(&admin.cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = put(
        owner.cookie.clone(),
        member(s.boot.user.id),
        json!({ "role": "admin" }),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (409, json!("LAST_OWNER"))
    );
    assert_eq!(
        invite(
            &s,
            &admin.cookie,
            json!({ "email": "o@example.com", "role": "owner" })
        )
        .await
        .status,
        403
    );

    // Per-project override: a Viewer becomes Editor in Demo only.
    let demo = s.boot.demo.id;
    let second = s.store.create_project(org, "Second").await.unwrap();
    let reg = json!({ "name": "R", "domain": "sip.example.com", "transport": "UDP" });
    let create = |pid: i64| {
        let c = viewer.cookie.clone();
        let reg = reg.clone();
        async move {
            api(
                s.addr,
                "POST",
                &format!("/api/v1/projects/{pid}/registrars"),
                &Auth::Cookie(&c),
                Some(&reg),
            )
            .await
            .status
        }
    };
    assert_eq!(create(demo).await, 403);
    let r = put(
        admin.cookie.clone(),
        format!("/api/v1/projects/{demo}/members/{}", viewer_user.id),
        json!({ "role": "editor" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["effectiveRole"], "editor");
    assert_eq!(create(demo).await, 201);
    assert_eq!(create(second.id).await, 403);
    // Restrict the Viewer to the projects with an override: Second disappears.
    let r = put(
        admin.cookie.clone(),
        member(viewer_user.id),
        json!({ "allProjects": false }),
    )
    .await;
    assert_eq!(r.json()["data"]["allProjects"], false);
    let seen = api(
        s.addr,
        "GET",
        &format!("/api/v1/projects/{}/registrars", second.id),
        &Auth::Cookie(&viewer.cookie),
        None,
    )
    .await;
    assert_eq!(seen.status, 404);
    // Clear the override: no access to Demo either.
    let r = put(
        admin.cookie.clone(),
        format!("/api/v1/projects/{demo}/members/{}", viewer_user.id),
        json!({ "role": null }),
    )
    .await;
    assert_eq!(r.json()["data"]["effectiveRole"], serde_json::Value::Null);
    assert_eq!(create(demo).await, 404);

    // Removing a member ends their access.
    let r = api(
        s.addr,
        "DELETE",
        &member(viewer_user.id),
        &Auth::Cookie(&admin.cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let gone = api(
        s.addr,
        "GET",
        "/api/v1/projects",
        &Auth::Cookie(&viewer.cookie),
        None,
    )
    .await;
    assert_eq!(gone.json()["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn members_page_for_admins_and_viewers() {
    let s = TestServer::start("memberspage").await;
    let viewer_user = s.add_user("viewer@example.com", Role::Viewer).await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let viewer = sign_in(s.addr, "viewer@example.com", common::PASSWORD).await;

    let page = http(
        s.addr,
        "GET",
        "/projects/demo/members",
        &[("Cookie", &viewer.cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("viewer@example.com (you)"));
    assert!(
        !page.body.contains("id=\"invite\""),
        "viewers cannot invite"
    );

    let page = http(
        s.addr,
        "GET",
        "/projects/demo/members",
        &[("Cookie", &owner.cookie)],
        "",
    )
    .await;
    assert!(page.body.contains("id=\"invite\""));
    // Make the viewer a Tester with an Editor override in Demo, through the row's form.
    let r = http(
        s.addr,
        "POST",
        &format!("/projects/demo/members/{}", viewer_user.id),
        &[("Cookie", &owner.cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &owner.csrf),
            ("role", "tester"),
            ("allProjects", "on"),
            ("override", "editor"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        s.store
            .member_role(s.boot.org.id, viewer_user.id)
            .await
            .unwrap(),
        Some(Role::Tester)
    );
    assert_eq!(
        s.store
            .project_role(s.boot.demo.id, viewer_user.id)
            .await
            .unwrap(),
        Some(Role::Editor)
    );
    let list = http(
        s.addr,
        "GET",
        "/projects/demo/registrars",
        &[("Cookie", &viewer.cookie)],
        "",
    )
    .await;
    assert!(
        list.body.contains("New Registrar"),
        "the override makes them an Editor here"
    );

    // Invite from the page: the link is shown once.
    let r = http(
        s.addr,
        "POST",
        "/projects/demo/invitations",
        &[("Cookie", &owner.cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &owner.csrf),
            ("email", "new@example.com"),
            ("role", "tester"),
            ("scope", "project"),
        ]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let marker = "<code id=\"invite-link\" class=\"secret\">";
    let start = r.body.find(marker).unwrap() + marker.len();
    let link = &r.body[start..start + r.body[start..].find('<').unwrap()];
    assert!(
        link.starts_with(&format!("http://{}/invite/", s.addr)),
        "{link}"
    );
    assert!(r.body.contains("new@example.com as Tester (one project)"));
    let again = http(
        s.addr,
        "GET",
        "/projects/demo/members",
        &[("Cookie", &owner.cookie)],
        "",
    )
    .await;
    assert!(!again.body.contains(link), "not shown again");
    // Revoke it: the link stops working.
    let inv = s
        .store
        .invitations(s.boot.org.id, store::now_ms())
        .await
        .unwrap();
    assert_eq!(inv.len(), 1);
    let r = http(
        s.addr,
        "POST",
        &format!("/projects/demo/invitations/{}/revoke", inv[0].id),
        &[("Cookie", &owner.cookie), ("Content-Type", FORM)],
        &form(&[("csrf", &owner.csrf)]),
    )
    .await;
    assert_eq!(r.status, 303);
    let path = link.split_once(&s.addr.to_string()).unwrap().1;
    assert_eq!(http(s.addr, "GET", path, &[], "").await.status, 404);
    let v = api(
        s.addr,
        "DELETE",
        &format!("/api/v1/orgs/{}/invitations/{}", s.boot.org.id, inv[0].id),
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await;
    assert_eq!(v.status, 404, "already revoked");
    let fresh = invite(&s, &owner.cookie, json!({ "email": "later@example.com" })).await;
    let fresh_id = fresh.json()["data"]["id"].as_i64().unwrap();
    let fresh_path = fresh.json()["data"]["path"].as_str().unwrap().to_string();
    let revoke = format!("/api/v1/orgs/{}/invitations/{fresh_id}", s.boot.org.id);
    let v = api(
        s.addr,
        "DELETE",
        &revoke,
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await;
    assert_eq!(
        (v.status, v.json()["data"]["revoked"].clone()),
        (200, json!(fresh_id))
    );
    assert_eq!(http(s.addr, "GET", &fresh_path, &[], "").await.status, 404);

    // The last Owner cannot be demoted from the page either.
    let r = http(
        s.addr,
        "POST",
        &format!("/projects/demo/members/{}", s.boot.user.id),
        &[("Cookie", &owner.cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &owner.csrf),
            ("role", "admin"),
            ("allProjects", "on"),
            ("override", ""),
        ]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        r.body
            .contains("Not changed: the organization must keep at least one Owner.")
    );
}
