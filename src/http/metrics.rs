//! `GET /metrics`: the figures of `/health` in the Prometheus text format, rendered by
//! metrics-exporter-prometheus from a recorder filled at scrape time, so the two endpoints can
//! never disagree. Names are `mcp_platform_` + the `/health` path (`websocket_stats.turns.
//! completed` → `mcp_platform_websocket_turns_completed`); provider and MCP server names become
//! `provider` / `server` labels, latency summaries become `quantile` labels (milliseconds), and
//! small enumerations (circuit, state) become a `…_info{value="…"} 1` series. Labels stay low
//! in cardinality: they name configured providers and servers, nothing a client controls.

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::Value;

use super::AppState;

const PREFIX: &str = "mcp_platform";

/// String fields exported as `…_info{value="…"} 1`: enumerations, not free text.
const ENUMS: [&str; 4] = ["status", "circuit", "state", "transport"];

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// With authentication on: an admin key, or `server.metrics_token` as a bearer token.
async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if state.auth.required()
        && let Err(refusal) = may_scrape(&state, &headers, peer)
    {
        state.counters.auth_refused();
        return super::auth::refusal_response(refusal);
    }
    let health = serde_json::to_value(super::health::snapshot(&state).await).unwrap_or(Value::Null);
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || emit(&health));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// The metrics token or an admin's credentials; throttled like every door (a wrong token
/// counts as a failed attempt, and a throttled address is answered 429 whatever it sends).
fn may_scrape(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), crate::auth::Refusal> {
    use crate::auth::{Credential, Refusal};
    let address = super::auth::client_address(state, headers, peer);
    state.auth.check_throttle(address)?;
    let credential = super::auth::credential(headers);
    if let (Some(token), Credential::Bearer(sent)) =
        (&state.config.server.metrics_token, &credential)
    {
        use crate::auth::secrets::{hash, same};
        if same(&hash(token.expose()), &hash(sent)) {
            return Ok(());
        }
    }
    if matches!(credential, Credential::None) {
        return Err(Refusal::Unauthorized);
    }
    match state.auth.authenticate(credential, address) {
        Ok(caller) if caller.is_admin() => Ok(()),
        Ok(_) => Err(Refusal::Unauthorized),
        Err(refusal) => Err(refusal),
    }
}

/// Every number of the `/health` document as a gauge.
fn emit(health: &Value) {
    let Value::Object(sections) = health else {
        return;
    };
    for (section, value) in sections {
        let name = section.trim_end_matches("_stats");
        match section.as_str() {
            "llm_client_stats" => each_labelled(value, &format!("{PREFIX}_llm"), "provider"),
            "mcp_stats" => {
                walk(&value["tools"], &format!("{PREFIX}_mcp_tools"), &[]);
                each_labelled(&value["servers"], &format!("{PREFIX}_mcp_server"), "server");
            }
            "version" => {}
            _ => walk(value, &format!("{PREFIX}_{name}"), &[]),
        }
    }
}

/// `{NAME: {...}}` → the inner figures with `label="NAME"`.
fn each_labelled(value: &Value, name: &str, label: &str) {
    if let Value::Object(entries) = value {
        for (key, inner) in entries {
            walk(inner, name, &[(label.to_string(), key.clone())]);
        }
    }
}

fn walk(value: &Value, name: &str, labels: &[(String, String)]) {
    match value {
        Value::Number(number) => {
            if let Some(n) = number.as_f64() {
                metrics::gauge!(name.to_string(), labels).set(n);
            }
        }
        Value::Bool(flag) => {
            metrics::gauge!(name.to_string(), labels).set(f64::from(u8::from(*flag)));
        }
        Value::String(text) if ENUMS.iter().any(|e| name.ends_with(e)) => {
            let mut labels = labels.to_vec();
            labels.push(("value".into(), text.clone()));
            metrics::gauge!(format!("{name}_info"), &labels).set(1.0);
        }
        Value::Object(fields) if fields.contains_key("p50") => summary(fields, name, labels),
        Value::Object(fields) => {
            for (key, inner) in fields {
                walk(inner, &format!("{name}_{key}"), labels);
            }
        }
        _ => {}
    }
}

/// `{count, p50, p95, p99, max, mean}` → `name{quantile="0.5"}`…, `name_count`, `name_max`.
fn summary(fields: &serde_json::Map<String, Value>, name: &str, labels: &[(String, String)]) {
    for (key, inner) in fields {
        let quantile = match key.as_str() {
            "p50" => "0.5",
            "p95" => "0.95",
            "p99" => "0.99",
            _ => {
                walk(inner, &format!("{name}_{key}"), labels);
                continue;
            }
        };
        if let Some(n) = inner.as_f64() {
            let mut labels = labels.to_vec();
            labels.push(("quantile".into(), quantile.into()));
            metrics::gauge!(name.to_string(), &labels).set(n);
        }
    }
}
