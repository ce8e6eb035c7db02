//! Admin → Connections and Variables pages: what each role may see and do, forms with CSRF, a
//! stored password never on a page, a masked value sent back keeping the secret.

use axum::http::{StatusCode, header};
use serde_json::json;
use updraft_orchestrator::store::{connections, variables};

use crate::common::{csrf_of, form, login, page, setup};

const PASSWORD: &str = "ui-s3cr3t-pass";
const TOKEN: &str = "ui-t0k3n-value";

fn encoded(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

#[tokio::test]
async fn connections_pages_add_edit_test_and_delete_as_admin_only() {
    let Some(ctx) = setup("web_ui_connections").await else {
        return;
    };
    let admin = login(&ctx, "admin").await;
    let csrf = csrf_of(&ctx, &admin).await;
    let extra = json!({"token": TOKEN, "timeout": 3}).to_string();
    let add = [
        ("csrf_token", csrf.as_str()),
        ("connection_id", "ui_api"),
        ("conn_type", "http"),
        ("host", "127.0.0.1"),
        ("port", "1"),
        ("login", "me"),
        ("password", PASSWORD),
        ("extra", extra.as_str()),
    ];
    let added = form(&ctx, &admin, "/connections", encoded(&add)).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text());
    assert_eq!(added.headers[header::LOCATION], "/connections?saved=ui_api");
    let stored = connections::get(&ctx.pool, &ctx.cipher, "ui_api")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.password.as_deref(), Some(PASSWORD));
    assert_eq!(stored.port, Some(1));

    let list = page(&ctx, &admin, "/connections?saved=ui_api").await;
    assert_eq!(list.status, StatusCode::OK);
    let html = list.text();
    assert!(html.contains("Saved connection `ui_api`."), "{html}");
    assert!(html.contains("data-conn=\"ui_api\""), "{html}");
    assert!(!html.contains(PASSWORD) && !html.contains(TOKEN));

    // The edit form: no password, the extra's token as ***; saved back unchanged, both stay.
    let edit = page(&ctx, &admin, "/connections/ui_api/edit").await;
    assert_eq!(edit.status, StatusCode::OK);
    let html = edit.text();
    assert!(!html.contains(PASSWORD) && !html.contains(TOKEN), "{html}");
    let unescaped = html.replace("&#34;", "\"").replace("&quot;", "\"");
    assert!(unescaped.contains(r#""token":"***""#), "{html}");
    let shown_extra = json!({"token": "***", "timeout": 5}).to_string();
    let mut resave = vec![("existing", "ui_api"), ("password", "")];
    resave.extend(
        add.iter()
            .filter(|(name, _)| !["password", "extra", "port"].contains(name)),
    );
    resave.push(("extra", shown_extra.as_str()));
    resave.push(("port", "2"));
    let saved = form(&ctx, &admin, "/connections", encoded(&resave)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text());
    let stored = connections::get(&ctx.pool, &ctx.cipher, "ui_api")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password.as_deref(), Some(PASSWORD), "empty keeps");
    assert_eq!(stored.port, Some(2));
    let extra = stored.extra_dejson().unwrap();
    assert_eq!(
        (extra["token"].clone(), extra["timeout"].clone()),
        (json!(TOKEN), json!(5))
    );

    // Bad input: the form again with a message and what was typed (the password too: this user
    // just typed it; a stored one never comes back).
    let mut bad = add.to_vec();
    bad[1] = ("connection_id", "ui_other");
    bad[4] = ("port", "http");
    let refused = form(&ctx, &admin, "/connections", encoded(&bad)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let html = refused.text();
    assert!(html.contains("`port` must be a number") && html.contains("value=\"ui_other\""));
    assert!(html.contains(&format!("value=\"{PASSWORD}\"")));
    let taken = form(&ctx, &admin, "/connections", encoded(&add)).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.text().contains("ui_api"));
    let mut renamed = resave.clone();
    renamed.retain(|(name, _)| *name != "connection_id");
    renamed.push(("connection_id", "ui_stolen"));
    let refused = form(&ctx, &admin, "/connections", encoded(&renamed)).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "an edit keeps its id"
    );

    // Test: the stored password is used and never shown; port 1 refuses.
    let mut test = resave.clone();
    test.push(("test", "1"));
    let tested = form(&ctx, &admin, "/connections/test", encoded(&test)).await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text());
    let html = tested.text();
    assert!(
        html.contains("id=\"test-result\" data-ok=\"false\""),
        "{html}"
    );
    assert!(html.contains("GET http://127.0.0.1:2") && !html.contains(PASSWORD));

    // Other roles: the Connections pages and forms are the admin's.
    for role in ["op", "viewer"] {
        let cookie = login(&ctx, role).await;
        let token = csrf_of(&ctx, &cookie).await;
        let dags = page(&ctx, &cookie, "/dags").await.text();
        assert!(
            !dags.contains("href=\"/connections\""),
            "{role} sees no menu entry"
        );
        for uri in [
            "/connections",
            "/connections/new",
            "/connections/ui_api/edit",
        ] {
            assert_eq!(
                page(&ctx, &cookie, uri).await.status,
                StatusCode::FORBIDDEN,
                "{role} {uri}"
            );
        }
        let mut theirs = add.to_vec();
        theirs[0] = ("csrf_token", token.as_str());
        theirs[1] = ("connection_id", "theirs");
        for uri in ["/connections", "/connections/test"] {
            let refused = form(&ctx, &cookie, uri, encoded(&theirs)).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{role} {uri}");
        }
        let refused = form(
            &ctx,
            &cookie,
            "/connections/ui_api/delete",
            encoded(&[("csrf_token", &token)]),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{role} delete");
    }
    assert!(
        connections::get(&ctx.pool, &ctx.cipher, "theirs")
            .await
            .unwrap()
            .is_none()
    );

    // Delete needs the session's CSRF token.
    let forged = form(
        &ctx,
        &admin,
        "/connections/ui_api/delete",
        "csrf_token=x".into(),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let deleted = form(
        &ctx,
        &admin,
        "/connections/ui_api/delete",
        encoded(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert!(
        connections::get(&ctx.pool, &ctx.cipher, "ui_api")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn variables_pages_show_keys_to_viewers_and_values_to_operators() {
    let Some(ctx) = setup("web_ui_variables").await else {
        return;
    };
    for (key, value) in [("region", "eu-west-1"), ("api_token", TOKEN)] {
        let variable = variables::Variable {
            key: key.into(),
            value: value.into(),
            description: Some(format!("the {key}")),
        };
        variables::set(&ctx.pool, &ctx.cipher, &variable)
            .await
            .unwrap();
    }

    let viewer = login(&ctx, "viewer").await;
    let html = page(&ctx, &viewer, "/variables").await.text();
    assert!(html.contains("data-key=\"region\"") && html.contains("data-key=\"api_token\""));
    assert!(
        !html.contains("eu-west-1") && !html.contains(TOKEN),
        "keys only"
    );
    assert!(!html.contains("href=\"/variables/new\""));
    let viewer_csrf = csrf_of(&ctx, &viewer).await;
    for uri in ["/variables/new", "/variables/region/edit"] {
        assert_eq!(
            page(&ctx, &viewer, uri).await.status,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    let refused = form(
        &ctx,
        &viewer,
        "/variables",
        encoded(&[("csrf_token", &viewer_csrf), ("key", "x"), ("value", "y")]),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = form(
        &ctx,
        &viewer,
        "/variables/region/delete",
        encoded(&[("csrf_token", &viewer_csrf)]),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let op = login(&ctx, "op").await;
    let csrf = csrf_of(&ctx, &op).await;
    let html = page(&ctx, &op, "/variables").await.text();
    assert!(html.contains("eu-west-1"), "an operator sees values");
    assert!(!html.contains(TOKEN), "a sensitive key's value is ***");
    let edit = page(&ctx, &op, "/variables/api_token/edit").await.text();
    assert!(
        !edit.contains(TOKEN) && edit.contains(">***</textarea>"),
        "{edit}"
    );
    // Sent back as ***, the token stays; a new description is taken.
    let saved = form(
        &ctx,
        &op,
        "/variables",
        encoded(&[
            ("csrf_token", &csrf),
            ("existing", "api_token"),
            ("key", "api_token"),
            ("value", "***"),
            ("description", "rotated never"),
        ]),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text());
    let stored = variables::get(&ctx.pool, &ctx.cipher, "api_token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, TOKEN);
    assert_eq!(stored.description.as_deref(), Some("rotated never"));
    // Add, then delete.
    let added = form(
        &ctx,
        &op,
        "/variables",
        encoded(&[
            ("csrf_token", &csrf),
            ("key", "batch_size"),
            ("value", "500"),
        ]),
    )
    .await;
    assert_eq!(
        added.headers[header::LOCATION],
        "/variables?saved=batch_size"
    );
    let stored = variables::get(&ctx.pool, &ctx.cipher, "batch_size")
        .await
        .unwrap();
    assert_eq!(stored.map(|v| v.value).as_deref(), Some("500"));
    let empty_key = form(
        &ctx,
        &op,
        "/variables",
        encoded(&[("csrf_token", &csrf), ("key", " "), ("value", "1")]),
    )
    .await;
    assert_eq!(empty_key.status, StatusCode::BAD_REQUEST);
    assert!(empty_key.text().contains("`key` must be"));
    let deleted = form(
        &ctx,
        &op,
        "/variables/batch_size/delete",
        encoded(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert!(
        variables::get(&ctx.pool, &ctx.cipher, "batch_size")
            .await
            .unwrap()
            .is_none()
    );
}
