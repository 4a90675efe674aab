//! `mcp-platform loadtest`: drives a running server's `/ws/chat` (`client.rs`) or, with
//! `--api openai`, its `/v1/chat/completions` (`openai_client.rs`) with many simulated
//! clients, prints live progress, and ends with turns/s, time to first token and turn
//! latency percentiles, errors by code, the server's own CPU per turn and memory (from its
//! `/health`), and the verdict of each SLO. `--idle N` holds N idle sockets instead and reports
//! the server's memory with them open and after they close.

mod client;
pub mod html;
mod openai_client;
pub mod profile;
pub mod report;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use profile::{Plan, Profile, Slo, parse_slos};
pub use report::{HealthPoint, Percentiles, Report, ServerFigures, Timeline};

use client::{Outcome, Progress};

/// How often `/health` is sampled during a run: 40 times a second, so that its p99 is a
/// percentile (~200 samples in a 5 s run: the third slowest), not the slowest of a few dozen.
const HEALTH_EVERY: Duration = Duration::from_millis(25);

/// After a run, how often `/health` is read until the server has settled.
const SETTLE_EVERY: Duration = Duration::from_millis(200);

/// The server counts as idle after a run when it used less CPU than this in [`SETTLE_EVERY`].
const SETTLED_CPU_SECONDS: f64 = 0.01;

/// `--idle`: how long after the server saw the sockets close its memory is read again (it
/// gives freed memory back once quiet for 2 s, by default).
const AFTER_CLOSE: Duration = Duration::from_secs(5);

/// The longest wait for the server to go idle after a run.
const SETTLE_AT_MOST: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Options {
    /// `ws://host:port/ws/chat`.
    pub url: String,
    pub plan: Plan,
    pub slos: Vec<Slo>,
    /// Live progress on stderr once a second.
    pub progress: bool,
    /// An API key for the sockets and `/health` (an admin key gives the server's figures).
    pub key: Option<String>,
    /// Which door to drive.
    pub api: Api,
    /// `--api openai`: the model to ask for; by default the first of `GET /v1/models`.
    pub model: Option<String>,
    /// `--api openai`: store each conversation (`X-Conversation-Id`), as `/ws/chat` does.
    pub store: bool,
    /// `NAME {json}`: every turn asks the mock provider to call this tool once.
    pub tool_call: Option<String>,
}

/// The door a load test drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Api {
    /// `/ws/chat`: one socket per client, the conversation kept by the server.
    #[default]
    Ws,
    /// `/v1/chat/completions`, streamed: one kept-alive connection per client, the
    /// conversation sent with each request.
    Openai,
}

/// `ws://host:port/…` → `http://host:port/PATH`.
fn http_url(ws_url: &str, path: &str) -> Result<String, String> {
    let mut url = reqwest::Url::parse(&health_url(ws_url)?).map_err(|e| e.to_string())?;
    url.set_path(path);
    Ok(url.to_string())
}

/// The model an OpenAI-door run asks for: the one given, else the first the server lists.
async fn model_to_ask(options: &Options, http: &reqwest::Client) -> Result<String, String> {
    if let Some(model) = &options.model {
        return Ok(model.clone());
    }
    let url = http_url(&options.url, "/v1/models")?;
    let listed: Value = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    listed["data"][0]["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("GET {url} lists no model: {listed}"))
}

/// An HTTP client that sends `key` as a bearer token on every request.
fn http_client(key: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = key.and_then(|k| format!("Bearer {k}").parse().ok()) {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

/// `ws://host:port/ws/chat` → `http://host:port/health`.
pub fn health_url(ws_url: &str) -> Result<String, String> {
    let mut url = reqwest::Url::parse(ws_url).map_err(|e| format!("`{ws_url}`: {e}"))?;
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        other => {
            return Err(format!(
                "`{ws_url}`: the scheme must be ws or wss, not {other}"
            ));
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| format!("`{ws_url}`: cannot use {scheme}"))?;
    url.set_path("/health");
    url.set_query(None);
    Ok(url.to_string())
}

pub async fn run(options: Options) -> Result<Report, String> {
    let health = health_url(&options.url)?;
    let http = http_client(options.key.as_deref());
    let before = fetch_health(&http, &health).await;
    let openai = match options.api {
        Api::Ws => None,
        Api::Openai => Some((
            http_url(&options.url, "/v1/chat/completions")?,
            model_to_ask(&options, &http).await?,
        )),
    };
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let done = CancellationToken::new();
    let plan = &options.plan;
    if let Some(duration) = plan.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
    let tool_call: Option<Arc<str>> = options.tool_call.as_deref().map(Arc::from);
    let started = Instant::now();
    let sampler = spawn_sampler(health.clone(), options.key.clone(), done.clone(), started);
    let printer = options.progress.then(|| {
        tokio::spawn(print_progress(
            progress.clone(),
            plan.connections,
            done.clone(),
        ))
    });
    let tasks: Vec<_> = (0..plan.connections)
        .map(|i| {
            let delay = plan.ramp_up.mul_f64(ratio(i, plan.connections));
            let (url, stop, progress) = (options.url.clone(), stop.clone(), progress.clone());
            let key = options.key.clone();
            let shape = client::Shape {
                turns: plan.turns,
                pace: plan.pace(),
                conversation_turns: plan.conversation_turns.max(1),
                delay,
                tool_call: tool_call.clone(),
            };
            let openai = openai.clone();
            let store = options.store;
            tokio::spawn(async move {
                match openai {
                    None => client::run(url, key, shape, stop, &progress).await,
                    Some((url, model)) => {
                        let target = openai_client::Target {
                            url,
                            key,
                            model,
                            store,
                        };
                        openai_client::run(target, shape, stop, &progress).await
                    }
                }
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    done.cancel();
    let health_samples = sampler.await.unwrap_or_default();
    if let Some(printer) = printer {
        let _ = printer.await;
    }
    let after = settled_health(&http, &health).await;
    let mut report = summarize(&options, outcomes, elapsed, started);
    report.server = server_figures(
        before.as_ref(),
        after.as_ref(),
        report.turns_completed,
        health_samples.iter().map(|h| h.round_trip).collect(),
    );
    report.timeline.health = health_samples;
    report.judge(&options.slos);
    Ok(report)
}

#[allow(clippy::cast_precision_loss)] // small counts
fn ratio(i: usize, n: usize) -> f64 {
    i as f64 / n.max(1) as f64
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn summarize(
    options: &Options,
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    started: Instant,
) -> Report {
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ttft, mut latency, mut completed) = (Vec::new(), Vec::new(), 0);
    let mut tool_calls = 0;
    let mut timeline = report::Timeline::default();
    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    for outcome in outcomes {
        ttft.extend(outcome.ttft);
        timeline.turns.extend(
            outcome
                .ended
                .iter()
                .zip(&outcome.latency)
                .map(|(&at, took)| (since(at), took.as_secs_f64() * 1000.0)),
        );
        timeline
            .failures
            .extend(outcome.failed_at.iter().map(|&at| since(at)));
        latency.extend(outcome.latency);
        completed += outcome.completed;
        tool_calls += outcome.tool_calls;
        for (code, count) in outcome.errors {
            *errors.entry(code).or_default() += count;
        }
    }
    let failed: u64 = errors.values().sum();
    let attempted = completed + failed;
    Report {
        url: options.url.clone(),
        connections: options.plan.connections,
        rate: options.plan.rate,
        duration_s: (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        turns_completed: completed,
        turns_failed: failed,
        error_rate: if attempted == 0 {
            0.0
        } else {
            failed as f64 / attempted as f64
        },
        turns_per_s: (completed as f64 / elapsed.as_secs_f64().max(1e-9) * 10.0).round() / 10.0,
        errors,
        ttft_ms: Percentiles::of(ttft),
        turn_ms: Percentiles::of(latency),
        server: ServerFigures::default(),
        slos: Vec::new(),
        tool_call: options.tool_call.clone(),
        tool_calls,
        timeline,
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn server_figures(
    before: Option<&Value>,
    after: Option<&Value>,
    turns: u64,
    health_samples: Vec<Duration>,
) -> ServerFigures {
    let cpu_ms_per_turn = match (server_cpu_seconds(before), server_cpu_seconds(after)) {
        (Some(b), Some(a)) if turns > 0 => {
            Some(((a - b) * 1000.0 / turns as f64 * 1000.0).round() / 1000.0)
        }
        _ => None,
    };
    ServerFigures {
        cpu_ms_per_turn,
        rss_bytes_before: server_rss_bytes(before),
        rss_bytes_after: server_rss_bytes(after),
        rss_anon_bytes_before: server_rss_anon_bytes(before),
        rss_anon_bytes_after: server_rss_anon_bytes(after),
        health_ms: Percentiles::of(health_samples),
    }
}

/// `/health` once the server has finished the work the run left (history indexing, writes):
/// when its CPU seconds stop growing, or after [`SETTLE_AT_MOST`].
async fn settled_health(http: &reqwest::Client, url: &str) -> Option<Value> {
    let deadline = Instant::now() + SETTLE_AT_MOST;
    let mut last = fetch_health(http, url).await;
    while Instant::now() < deadline {
        tokio::time::sleep(SETTLE_EVERY).await;
        let next = fetch_health(http, url).await;
        let busy = match (
            server_cpu_seconds(last.as_ref()),
            server_cpu_seconds(next.as_ref()),
        ) {
            (Some(before), Some(after)) => after - before > SETTLED_CPU_SECONDS,
            _ => false,
        };
        last = next;
        if !busy {
            break;
        }
    }
    last
}

/// The server's `process.cpu_seconds` in a `/health` body.
fn server_cpu_seconds(health: Option<&Value>) -> Option<f64> {
    health.and_then(|h| h["process"]["cpu_seconds"].as_f64())
}

/// The server's `process.rss_bytes` in a `/health` body.
fn server_rss_bytes(health: Option<&Value>) -> Option<u64> {
    process_bytes(health, "rss_bytes")
}

/// The server's `process.rss_anon_bytes` (private memory) in a `/health` body.
fn server_rss_anon_bytes(health: Option<&Value>) -> Option<u64> {
    process_bytes(health, "rss_anon_bytes")
}

fn process_bytes(health: Option<&Value>, figure: &str) -> Option<u64> {
    health.and_then(|h| h["process"][figure].as_u64())
}

async fn fetch_health(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Samples `/health` on a thread and runtime of its own: on the runtime that drives thousands
/// of simulated clients, a sample would also measure how long the load generator took to poll
/// it.
fn spawn_sampler(
    url: String,
    key: Option<String>,
    done: CancellationToken,
    started: Instant,
) -> tokio::sync::oneshot::Receiver<Vec<HealthPoint>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("health-sampler".into())
        .spawn(move || {
            let samples = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| {
                    runtime.block_on(sample_health(
                        http_client(key.as_deref()),
                        url,
                        done,
                        started,
                    ))
                })
                .unwrap_or_default();
            let _ = sender.send(samples);
        });
    if let Err(error) = spawned {
        eprintln!("warning: no /health sampling: {error}");
    }
    receiver
}

/// `/health` round trips until `done`, with the CPU and memory the server said.
async fn sample_health(
    http: reqwest::Client,
    url: String,
    done: CancellationToken,
    started: Instant,
) -> Vec<HealthPoint> {
    // The first request opens the sampler's connection and runs its code for the first time:
    // that is the sampler's set-up, not a round trip of the server at work, and of some 30
    // samples in a run it alone would be the p99.
    if let Ok(response) = http.get(&url).send().await {
        let _ = response.bytes().await;
    }
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = done.cancelled() => return samples,
        }
        let sent = Instant::now();
        if let Ok(response) = http.get(&url).send().await
            && let Ok(body) = response.bytes().await
        {
            let round_trip = sent.elapsed();
            let health: Option<Value> = serde_json::from_slice(&body).ok();
            samples.push(HealthPoint {
                at_s: sent.saturating_duration_since(started).as_secs_f64(),
                round_trip,
                cpu_seconds: server_cpu_seconds(health.as_ref()),
                rss_bytes: server_rss_bytes(health.as_ref()),
            });
        }
    }
}

async fn print_progress(progress: Arc<Progress>, connections: usize, done: CancellationToken) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = done.cancelled() => return,
        }
        let turns = progress.turns.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4}s] connected {}/{connections}  turns {turns} ({}/s)  errors {}",
            started.elapsed().as_secs(),
            progress.connected.load(Ordering::Relaxed),
            turns - last,
            progress.errors.load(Ordering::Relaxed),
        );
        last = turns;
    }
}

/// `--idle N`: the server's memory with N idle sockets open, and after they close.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub url: String,
    pub requested: usize,
    pub opened: usize,
    pub errors: BTreeMap<String, u64>,
    pub server_active: Option<u64>,
    pub rss_bytes_before: Option<u64>,
    pub rss_bytes_open: Option<u64>,
    pub rss_bytes_after_close: Option<u64>,
    /// Private memory (RssAnon), the figure that counts: RSS also holds code pages.
    pub rss_anon_bytes_before: Option<u64>,
    pub rss_anon_bytes_open: Option<u64>,
    pub rss_anon_bytes_after_close: Option<u64>,
    /// Private memory: (open − before) ÷ opened.
    pub bytes_per_connection: Option<u64>,
}

impl IdleReport {
    pub fn table(&self) -> String {
        let mb =
            |b: Option<u64>| b.map_or_else(|| "?".into(), |b| format!("{:.1} MB", report::mb(b)));
        let active = self
            .server_active
            .map_or_else(|| "?".into(), |n| n.to_string());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "idle connections to {}: {} of {} open (the server counts {active})",
            self.url, self.opened, self.requested
        );
        let _ = writeln!(out, "  server memory, private / RSS");
        for (when, anon, rss) in [
            ("before", self.rss_anon_bytes_before, self.rss_bytes_before),
            (
                "with them open",
                self.rss_anon_bytes_open,
                self.rss_bytes_open,
            ),
            (
                "5 s after closing",
                self.rss_anon_bytes_after_close,
                self.rss_bytes_after_close,
            ),
        ] {
            let _ = writeln!(out, "    {when:<18} {} / {}", mb(anon), mb(rss));
        }
        if let Some(per) = self.bytes_per_connection {
            let _ = writeln!(
                out,
                "  per connection                {:.1} KB",
                report::mb(per) * 1024.0
            );
        }
        for (code, count) in &self.errors {
            let _ = writeln!(out, "  error `{code}`  {count}");
        }
        out
    }
}

pub async fn run_idle(
    url: String,
    key: Option<String>,
    count: usize,
) -> Result<IdleReport, String> {
    let health = health_url(&url)?;
    let http = http_client(key.as_deref());
    let rss = |h: &Option<Value>| server_rss_bytes(h.as_ref());
    let anon = |h: &Option<Value>| server_rss_anon_bytes(h.as_ref());
    let before = fetch_health(&http, &health).await;
    let close = CancellationToken::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let opened: Vec<_> = futures::stream::iter(0..count)
        .map(|_| client::connect(&url, key.as_deref()))
        .buffer_unordered(256)
        .collect()
        .await;
    let mut holders = Vec::new();
    for socket in opened {
        match socket {
            Ok(socket) => holders.push(tokio::spawn(hold(socket, close.clone()))),
            Err(code) => *errors.entry(code).or_default() += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = fetch_health(&http, &health).await;
    let server_active = open
        .as_ref()
        .and_then(|h| h["websocket_stats"]["active"].as_u64());
    close.cancel();
    let opened = holders.len();
    for holder in holders {
        let _ = holder.await;
    }
    // Wait for the server to see them all closed, then for its allocator to settle.
    for _ in 0..60 {
        let h = fetch_health(&http, &health).await;
        if h.as_ref()
            .and_then(|h| h["websocket_stats"]["active"].as_u64())
            == Some(0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(AFTER_CLOSE).await;
    let after = fetch_health(&http, &health).await;
    let per = match (anon(&before), anon(&open)) {
        (Some(b), Some(o)) if opened > 0 => Some(o.saturating_sub(b) / opened as u64),
        _ => None,
    };
    Ok(IdleReport {
        url,
        requested: count,
        opened,
        errors,
        server_active,
        rss_bytes_before: rss(&before),
        rss_bytes_open: rss(&open),
        rss_bytes_after_close: rss(&after),
        rss_anon_bytes_before: anon(&before),
        rss_anon_bytes_open: anon(&open),
        rss_anon_bytes_after_close: anon(&after),
        bytes_per_connection: per,
    })
}

/// Keeps a socket open and answering pings until `close`.
async fn hold(mut socket: client::Socket, close: CancellationToken) {
    loop {
        tokio::select! {
            message = socket.next() => if message.is_none() { return },
            () = close.cancelled() => {
                let _ = socket.close(None).await;
                return;
            }
        }
    }
}
