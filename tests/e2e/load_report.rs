//! `loadtest --report FILE.html`: one self-contained page (no script, nothing fetched) that
//! parses as HTML and holds its plots as inline SVG, its summary and its SLO verdicts; and
//! `loadtest --tool-call`, whose every turn runs an MCP tool.

use mcp_platform::mock_provider::Reply;
use scraper::{Html, Selector};
use serde_json::Value;

use crate::support::run_to_completion;

fn select<'a>(document: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    let selector = Selector::parse(css).expect("selector");
    document.select(&selector).collect()
}

#[tokio::test]
async fn the_report_is_a_self_contained_page_with_its_plots() {
    let (app, fake) = crate::support::chat_app(|_| {}).await;
    // Three turns are refused by the provider: errors to plot.
    fake.mock
        .push([Reply::status(400), Reply::status(400), Reply::status(400)]);
    let url = format!("ws://{}/ws/chat", app.addr);
    let file = app.dir.path().join("report.html");
    let path = file.to_str().expect("path");
    let (code, stdout, stderr) = run_to_completion(&[
        "loadtest",
        "--url",
        &url,
        "--connections",
        "4",
        "--turns",
        "10",
        "--json",
        "--slo",
        "p99_ms=60000,turns_per_s=0.1",
        "--report",
        path,
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("report written to"), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("the JSON report still comes");
    assert_eq!(report["turns_completed"], 37, "{report}");
    assert_eq!(report["turns_failed"], 3, "{report}");

    let text = std::fs::read_to_string(&file).expect("the report file");
    let document = Html::parse_document(&text);
    assert!(
        document.errors.is_empty(),
        "HTML parse errors: {:?}",
        document.errors
    );
    assert!(select(&document, "script").is_empty(), "no script");
    let fetching: Vec<String> = select(&document, "[src], link[href]")
        .iter()
        .map(scraper::ElementRef::html)
        .collect();
    assert!(fetching.is_empty(), "the page fetches: {fetching:?}");
    for id in [
        "latency-over-time",
        "latency-histogram",
        "throughput",
        "errors",
        "server-cpu",
        "server-rss",
    ] {
        let plots = select(&document, &format!("figure#{id} svg"));
        assert_eq!(plots.len(), 1, "figure #{id} has no plot");
        let marks = select(
            &document,
            &format!("figure#{id} svg path, figure#{id} svg polyline, figure#{id} svg rect"),
        );
        assert!(marks.len() > 3, "figure #{id} draws nothing");
    }
    let errors_plot = select(&document, "figure#errors svg")[0].html();
    assert!(
        errors_plot.contains("http_400")
            || errors_plot.contains("invalid_request")
            || errors_plot.contains("provider"),
        "the error code is named: {errors_plot}"
    );
    let verdicts: Vec<String> = select(&document, "table#slos td")
        .iter()
        .map(|cell| cell.text().collect())
        .collect();
    assert!(
        verdicts.iter().filter(|v| *v == "met").count() == 2,
        "{verdicts:?}"
    );
    let summary: String = select(&document, "table#summary")[0].text().collect();
    assert!(
        summary.contains("turns completed") && summary.contains("37"),
        "{summary}"
    );

    // --idle has no report to write.
    let (code, _, stderr) =
        run_to_completion(&["loadtest", "--url", &url, "--idle", "2", "--report", path]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--report is for chat runs"), "{stderr}");
    app.shutdown().await;
}

#[tokio::test]
async fn tool_turns_run_the_tool_once_per_turn() {
    let (app, _fake) = crate::support::tool_app(|_| {}).await;
    let url = format!("ws://{}/ws/chat", app.addr);
    let (code, stdout, stderr) = run_to_completion(&[
        "loadtest",
        "--url",
        &url,
        "--connections",
        "2",
        "--turns",
        "3",
        "--json",
        "--tool-call",
        "echo {\"text\": \"load\"}",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["turns_completed"], 6, "{report}");
    assert_eq!(report["tool_calls"], 6, "{report}");
    assert_eq!(report["tool_call"], "echo {\"text\": \"load\"}");

    // A tool the server does not offer: the table says the calls did not happen.
    let (code, stdout, stderr) = run_to_completion(&[
        "loadtest",
        "--url",
        &url,
        "--connections",
        "1",
        "--turns",
        "2",
        "--tool-call",
        "nosuch {}",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("0 of `/tool nosuch {}`") && stdout.contains("is the tool offered"),
        "{stdout}"
    );
    app.shutdown().await;
}
