//! Guessing credentials is throttled per client address on every door, `/metrics` included;
//! behind a configured proxy, per client the proxy names, so one guesser does not lock out
//! everyone behind it, and a client not behind it cannot claim another's address.

use serde_json::json;

use crate::support::{create_key, spawn_app_with};

#[tokio::test]
async fn wrong_metrics_tokens_are_throttled_like_every_door() {
    let token = "scrape-token-0123456789";
    let app = spawn_app_with(|config| {
        config.server.metrics_token = Some(mcp_platform::config::Secret::new(token));
    })
    .await;
    create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let scrape = |bearer: &str| {
        app.client
            .get(app.url("/metrics"))
            .bearer_auth(bearer.to_string())
            .send()
    };
    let mut statuses = Vec::new();
    for guess in 0..12 {
        let status = scrape(&format!("guess-{guess}"))
            .await
            .expect("GET")
            .status();
        statuses.push(status.as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429; 2], "{statuses:?}");
    // Throttled is throttled: the right token waits out the minute too.
    assert_eq!(scrape(token).await.expect("GET").status().as_u16(), 429);
    app.shutdown().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_throttle() {
    let app = spawn_app_with(|config| {
        config.server.auth.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    })
    .await;
    let key = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let list = |bearer: &str, client: &str| {
        app.client
            .get(app.url("/api/conversations"))
            .bearer_auth(bearer.to_string())
            // A forged first hop, then what the proxy appended.
            .header("x-forwarded-for", format!("10.9.9.9, {client}"))
            .send()
    };
    for _ in 0..10 {
        let status = list("mcpp_wrong", "10.0.0.1").await.expect("GET").status();
        assert_eq!(status.as_u16(), 401);
    }
    assert_eq!(
        list(&key, "10.0.0.1").await.expect("GET").status().as_u16(),
        429,
        "the guesser is throttled"
    );
    assert_eq!(
        list(&key, "10.0.0.2").await.expect("GET").status().as_u16(),
        200,
        "another client behind the proxy is not"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_not_behind_a_trusted_proxy_cannot_claim_another_address() {
    let app = spawn_app_with(|_| {}).await;
    let key = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    for n in 0..10 {
        let status = app
            .client
            .get(app.url("/api/conversations"))
            .bearer_auth("mcpp_wrong")
            .header("x-forwarded-for", format!("10.0.0.{n}"))
            .send()
            .await
            .expect("GET")
            .status();
        assert_eq!(status.as_u16(), 401);
    }
    let status = app
        .client
        .get(app.url("/api/conversations"))
        .bearer_auth(&key)
        .header("x-forwarded-for", "10.0.0.200")
        .send()
        .await
        .expect("GET")
        .status();
    assert_eq!(
        status.as_u16(),
        429,
        "X-Forwarded-For is not trusted by default"
    );
    app.shutdown().await;
}
