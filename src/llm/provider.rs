//! One configured provider: its HTTP client, limits, circuit breaker and figures, and the one
//! way to call it, [`Provider::chat`].
//!
//! A call waits for a slot, passes the breaker, then tries the request up to `max_retries`
//! more times on connect errors, timeouts, 408, 429 and 5xx, and on a stream that dies before
//! its first event. It returns once the first event is in hand, so nothing is retried after
//! the caller has seen part of an answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use reqwest::header::{ACCEPT, RETRY_AFTER};
use tokio::time::Instant;

use super::assemble::{Assembler, excerpt};
use super::bounded::ReadFault;
use super::breaker::{CircuitBreaker, Pass};
use super::error::ProviderError;
use super::format::{Body, Completion, status_error};
use super::limits::{Limits, Refused, Slot};
use super::provider_stats::{ProviderSnapshot, ProviderStats};
use super::retry;
use super::sse::EventReader;
use super::text_tools;
use super::types::{ChatEvent, ChatRequest, ChatStream};
use crate::config::{ProviderConfig, Secret, ToolCallMode};

/// Largest non-streaming response body read.
const MAX_BODY_BYTES: usize = 16 << 20;

pub struct Provider {
    name: String,
    config: ProviderConfig,
    api_key: Option<Secret>,
    client: OnceLock<reqwest::Client>,
    limits: Limits,
    breaker: CircuitBreaker,
    stats: ProviderStats,
    /// The model's context window in tokens, as the provider last reported it (0: never).
    window: AtomicU32,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// `api_key` comes from the environment variable the config names; `None` leaves a
    /// provider that needs one unconfigured (it answers `provider_not_configured`).
    pub fn new(name: &str, config: &ProviderConfig, api_key: Option<String>) -> Self {
        let http = &config.http_client;
        Self {
            name: name.to_string(),
            api_key: api_key.filter(|k| !k.trim().is_empty()).map(Secret::new),
            client: OnceLock::new(),
            limits: Limits::new(
                http.concurrent_requests,
                http.requests_per_minute,
                http.pool_timeout,
            ),
            breaker: CircuitBreaker::new(
                config.circuit_breaker.failure_threshold,
                config.circuit_breaker.open_for,
            ),
            stats: ProviderStats::default(),
            window: AtomicU32::new(config.context_window.unwrap_or(0)),
            config: config.clone(),
        }
    }

    /// The HTTP client, built on first use: building one loads the TLS roots (~25 ms), which
    /// start-up should not pay for providers that may never be called.
    fn client(&self) -> Result<&reqwest::Client, ProviderError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let http = &self.config.http_client;
        let built = reqwest::Client::builder()
            .user_agent(concat!("mcp-platform/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(http.connect_timeout)
            .read_timeout(http.read_timeout)
            .pool_max_idle_per_host(http.max_keepalive as usize)
            .pool_idle_timeout(http.keepalive_expiry)
            .build()
            .map_err(|e| ProviderError::Connect {
                provider: self.name.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(self.client.get_or_init(|| built))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// Whether a request may name `model` here (`models` of the entry).
    pub fn accepts(&self, model: &str) -> bool {
        self.config.models.accepts(model, &self.config.model)
    }

    /// The models to list: the configured one first; `any` when any name is accepted.
    pub fn model_names(&self) -> (Vec<&str>, bool) {
        let any = self.config.models == crate::config::Models::Any;
        (self.config.models.names(&self.config.model), any)
    }

    pub fn embedding_model(&self) -> Option<&str> {
        self.config.embedding_model.as_deref()
    }

    /// The model's context window in tokens: configured (`context_window`), found at start,
    /// or said by the provider in a context overflow's error (the latest wins).
    pub fn context_window(&self) -> Option<u32> {
        Some(self.window.load(Ordering::Relaxed)).filter(|&w| w > 0)
    }

    /// The environment variable its key comes from (empty when it needs none).
    pub fn key_variable(&self) -> &str {
        self.config.api_key_env.as_deref().unwrap_or_default()
    }

    /// Whether requests can be sent: a key is present, or the entry needs none.
    pub fn configured(&self) -> bool {
        self.api_key.is_some() || self.config.api_key_env.is_none()
    }

    /// Starts a chat request and returns once its first event is in hand.
    #[tracing::instrument(skip_all, fields(provider = %self.name))]
    pub async fn chat(
        self: &Arc<Self>,
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError> {
        let started = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.open(request, started).await;
        if let Err(error) = &result {
            if let ProviderError::ContextLength {
                window: Some(window),
                ..
            } = error
            {
                self.window.store(*window, Ordering::Relaxed);
            }
            self.stats.record_error(error);
            // At the default level: the page tells users to look at the server's log.
            tracing::warn!(%error, "provider request failed");
        }
        result
    }

    async fn open(
        self: &Arc<Self>,
        request: &ChatRequest,
        started: Instant,
    ) -> Result<ChatStream, ProviderError> {
        let text_mode = self.config.tool_calls == ToolCallMode::Text;
        let in_text = text_mode.then(|| text_tools::to_text(request));
        let body = Body::new(&self.config, in_text.as_ref().unwrap_or(request));
        let (opened, slot, pass) = self.call(|| self.attempt(&body, request.stream)).await?;
        self.stats.ttft.record(started.elapsed());
        let stream = self.clone().finish_stream(opened, slot, pass, started);
        Ok(if text_mode {
            text_tools::read_calls(stream)
        } else {
            stream
        })
    }

    /// What every call goes through: the key check, the breaker, a request slot, then
    /// `attempt` until it succeeds or fails in a way not worth retrying. On success the caller
    /// owns the slot and reports the breaker verdict; on failure it is reported here.
    async fn call<T, F, Fut>(&self, mut attempt: F) -> Result<(T, Slot, Pass), ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        if !self.configured() {
            return Err(ProviderError::NotConfigured {
                provider: self.name.clone(),
                env_var: self.key_variable().to_string(),
            });
        }
        let pass = self
            .breaker
            .admit()
            .map_err(|retry_after| ProviderError::Unavailable {
                provider: self.name.clone(),
                retry_after,
            })?;
        let slot = match self.limits.acquire().await {
            Ok(slot) => slot,
            Err(refused) => {
                self.breaker.on_neutral(pass);
                return Err(self.refused(refused));
            }
        };
        let http = &self.config.http_client;
        let mut tries = 0;
        loop {
            let outcome = attempt().await;
            if let Err(ProviderError::ProviderRateLimited { .. }) = &outcome {
                self.stats.provider_429.fetch_add(1, Ordering::Relaxed);
            }
            match outcome {
                Ok(value) => return Ok((value, slot, pass)),
                Err(error) if tries < http.max_retries && worth_retrying(&error) => {
                    let wait = retry::delay(tries, http.backoff_factor, error.retry_after());
                    tracing::debug!(%error, tries, ?wait, "retrying provider request");
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    if error.is_outage() {
                        self.breaker.on_failure();
                    } else {
                        self.breaker.on_neutral(pass);
                    }
                    return Err(error);
                }
            }
        }
    }

    fn refused(&self, refused: Refused) -> ProviderError {
        let (limit, retry_after) = match refused {
            Refused::Concurrency => ("concurrent_requests", None),
            Refused::Rate { retry_after } => ("requests_per_minute", Some(retry_after)),
        };
        ProviderError::RateLimited {
            provider: self.name.clone(),
            limit,
            retry_after,
        }
    }

    /// A POST to `{base_url}/{path}` with the key and attribution headers.
    fn post(&self, path: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        let url = format!("{}/{path}", self.config.base_url.trim_end_matches('/'));
        let mut request = self.client()?.post(url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        if let Some(referer) = &self.config.http_referer {
            request = request.header("HTTP-Referer", referer);
        }
        if let Some(title) = &self.config.x_title {
            request = request.header("X-Title", title);
        }
        Ok(request)
    }

    /// Sends, bounded by `write_timeout + read_timeout` up to the response headers (reqwest
    /// has no write timeout of its own), and turns a non-success status into its error.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        model: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let http = &self.config.http_client;
        let response = tokio::time::timeout(http.write_timeout + http.read_timeout, request.send())
            .await
            .map_err(|_| self.timeout("waiting for the response"))?
            .map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = super::bounded::error_text(response, super::bounded::MAX_ERROR_BODY).await;
        Err(status_error(
            &self.name,
            &self.config,
            model,
            status,
            retry_after.as_deref(),
            &text,
        ))
    }

    /// One chat request, up to its first events.
    async fn attempt(&self, body: &Body<'_>, stream: bool) -> Result<Opened, ProviderError> {
        let mut request = self.post("chat/completions")?.json(body);
        if stream {
            request = request.header(ACCEPT, "text/event-stream");
        }
        let response = self.send(request, body.model()).await?;
        if !stream {
            return self.whole_response(response).await;
        }
        if let Some(opened) = self.first_events(response).await? {
            return Ok(opened);
        }
        // A 200 whose stream ends with no event at all: how llama-cpp-python fails a streamed
        // request (a context overflow among others). Asked once without streaming, the engine
        // answers with its real error, or with the answer.
        tracing::debug!("the stream held no event; asking again without streaming");
        let whole = body.unstreamed();
        let request = self.post("chat/completions")?.json(&whole);
        let response = match self.send(request, body.model()).await {
            // The engine may drop the connection the failed stream came on while it is taken
            // from the pool again (seen with uvicorn): once more, on a new one.
            Err(ProviderError::Connect { .. }) => {
                let request = self.post("chat/completions")?.json(&whole);
                self.send(request, body.model()).await?
            }
            sent => sent?,
        };
        self.whole_response(response).await
    }

    /// One `/embeddings` request for `inputs`, vectors in input order. Shares the limits,
    /// retries and breaker of chat requests.
    pub async fn embed_batch(
        &self,
        model: &str,
        inputs: &[String],
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let body = serde_json::json!({"model": model, "input": inputs});
        let attempt = || async {
            let response = self
                .send(self.post("embeddings")?.json(&body), model)
                .await?;
            let bytes = self.read_body(response).await?;
            super::format::embeddings(&bytes, inputs.len()).map_err(|m| self.stream_fault(m, true))
        };
        let result = self.call(attempt).await;
        match result {
            Ok((vectors, _slot, _pass)) => {
                self.breaker.on_success();
                Ok(vectors)
            }
            Err(error) => {
                self.stats.record_error(&error);
                Err(error)
            }
        }
    }

    /// Reads a stream up to its first events; `None` when the body ends without any event.
    async fn first_events(
        &self,
        response: reqwest::Response,
    ) -> Result<Option<Opened>, ProviderError> {
        let mut opened = Opened {
            pending: VecDeque::new(),
            source: Some(EventReader::new(response)),
            assembler: Assembler::default(),
            read_any: false,
            ended: false,
        };
        loop {
            match opened.read(self).await {
                Some(Ok(events)) if events.is_empty() => {}
                Some(Ok(events)) => {
                    opened.pending.extend(events);
                    return Ok(Some(opened));
                }
                // The body ended with nothing in it: how llama-cpp-python fails a stream. (One
                // that broke, timed out or ran past a cap is a fault like any other.)
                Some(Err(_)) if opened.ended && !opened.read_any => return Ok(None),
                Some(Err(message)) => return Err(self.stream_fault(message, true)),
                None => {
                    return Err(self.stream_fault("the stream ended with no event".into(), true));
                }
            }
        }
    }

    /// A whole body, at most `MAX_BODY_BYTES` (with or without `Content-Length`).
    async fn read_body(&self, response: reqwest::Response) -> Result<bytes::Bytes, ProviderError> {
        super::bounded::read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|fault| match fault {
                ReadFault::Transport(e) => self.transport(&e),
                other => self.stream_fault(other.to_string(), true),
            })
    }

    async fn whole_response(&self, response: reqwest::Response) -> Result<Opened, ProviderError> {
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(
                self.stream_fault(format!("response larger than {MAX_BODY_BYTES} bytes"), true)
            );
        }
        let bytes = self.read_body(response).await?;
        let completion: Completion = serde_json::from_slice(&bytes).map_err(|e| {
            self.stream_fault(
                format!(
                    "not a chat completion ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&bytes))
                ),
                true,
            )
        })?;
        let events = completion
            .into_events()
            .map_err(|m| self.stream_fault(m, true))?;
        Ok(Opened {
            pending: events.into(),
            source: None,
            assembler: Assembler::default(),
            read_any: true,
            ended: true,
        })
    }

    fn finish_stream(
        self: Arc<Self>,
        opened: Opened,
        slot: Slot,
        pass: Pass,
        started: Instant,
    ) -> ChatStream {
        let state = Running {
            provider: self,
            opened,
            _slot: slot,
            pass,
            started,
            outcome: None,
        };
        Box::pin(futures::stream::unfold(state, Running::next))
    }

    fn transport(&self, error: &reqwest::Error) -> ProviderError {
        if error.is_timeout() {
            self.timeout(if error.is_connect() {
                "connecting"
            } else {
                "reading"
            })
        } else {
            // Without the URL: it is ours, and the message is for the client.
            ProviderError::Connect {
                provider: self.name.clone(),
                message: error.without_url_text(),
            }
        }
    }

    fn timeout(&self, what: &'static str) -> ProviderError {
        ProviderError::Timeout {
            provider: self.name.clone(),
            what,
        }
    }

    /// What went wrong reading a stream, in words (a timeout names the provider).
    fn read_fault(&self, fault: &ReadFault) -> String {
        if fault.is_timeout() {
            format!("read timed out (provider `{}`)", self.name)
        } else {
            fault.to_string()
        }
    }

    fn stream_fault(&self, message: String, before_first_event: bool) -> ProviderError {
        ProviderError::Stream {
            provider: self.name.clone(),
            message,
            before_first_event,
        }
    }

    /// Adds a call's tokens to the provider's figures: the usage it reported, or the estimate
    /// of a caller whose answer came without one.
    pub fn count_tokens(&self, usage: &super::Usage) {
        let stats = &self.stats;
        stats
            .tokens_in
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        stats
            .tokens_out
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProviderSnapshot {
        let (errors, errors_by_kind, rate_limited) = self.stats.counters();
        ProviderSnapshot {
            configured: self.configured(),
            base_url: crate::scrub::endpoint(&self.config.base_url),
            model: self.config.model.clone(),
            in_flight: self.limits.in_flight(),
            waiting: self.limits.waiting(),
            concurrent_limit: self.limits.concurrent_limit,
            rpm_limit: self.limits.rpm_limit,
            requests: self.stats.requests.load(Ordering::Relaxed),
            completed: self.stats.completed.load(Ordering::Relaxed),
            errors,
            errors_by_kind,
            retries: self.stats.retries.load(Ordering::Relaxed),
            rate_limited,
            circuit: self.breaker.state_name(),
            ttft_ms: self.stats.ttft.summary(),
            latency_ms: self.stats.latency.summary(),
            tokens_in: self.stats.tokens_in.load(Ordering::Relaxed),
            tokens_out: self.stats.tokens_out.load(Ordering::Relaxed),
            embeddings: None,
        }
    }
}

trait WithoutUrl {
    fn without_url_text(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_text(&self) -> String {
        let mut text = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(cause) = source {
            text = cause.to_string();
            source = cause.source();
        }
        if text.is_empty() {
            "connection failed".into()
        } else {
            text
        }
    }
}

fn worth_retrying(error: &ProviderError) -> bool {
    match error {
        ProviderError::Stream {
            before_first_event, ..
        } => *before_first_event,
        ProviderError::ProviderRateLimited { retry_after, .. } => {
            retry_after.is_none_or(|d| d <= retry::MAX_RETRY_AFTER)
        }
        ProviderError::Timeout { .. }
        | ProviderError::Connect { .. }
        | ProviderError::Server { .. } => true,
        _ => false,
    }
}

/// A response whose first events are in hand.
struct Opened {
    pending: VecDeque<ChatEvent>,
    /// The body still to read; `None` once the answer has ended (or for a whole response).
    source: Option<EventReader>,
    assembler: Assembler,
    /// Whether any event came from the body (or the response was whole).
    read_any: bool,
    /// Whether the body ended (rather than broke off).
    ended: bool,
}

impl Opened {
    /// The events of the next `data:` payload (often none), or `None` once nothing more can
    /// come. Every call either awaits the body or finds it gone: the source is dropped as soon
    /// as the answer ends or fails, so no loop around this can spin on an ended body.
    async fn read(&mut self, provider: &Provider) -> Option<Result<Vec<ChatEvent>, String>> {
        let source = self.source.as_mut()?;
        let fed = match source.next().await {
            Some(Ok(data)) => {
                self.read_any = true;
                self.assembler.feed(data).map_err(|f| f.0)
            }
            Some(Err(fault)) => Err(provider.read_fault(&fault)),
            None => {
                self.ended = true;
                self.assembler.end(false).map_err(|f| f.0)
            }
        };
        if fed.is_err() || self.assembler.is_done() {
            self.source = None;
        }
        Some(fed)
    }
}

/// The rest of a stream: yields pending events, reads more, and on the end records figures
/// and tells the breaker how it went. Holds the request slot until then.
struct Running {
    provider: Arc<Provider>,
    opened: Opened,
    _slot: Slot,
    pass: Pass,
    started: Instant,
    /// `Some(ok)` once the stream has ended.
    outcome: Option<bool>,
}

impl Running {
    async fn next(mut self) -> Option<(Result<ChatEvent, ProviderError>, Self)> {
        loop {
            if let Some(event) = self.opened.pending.pop_front() {
                if let ChatEvent::Usage(usage) = &event {
                    self.provider.count_tokens(usage);
                }
                return Some((Ok(event), self));
            }
            if self.outcome.is_some() {
                return None;
            }
            match self.opened.read(&self.provider).await {
                Some(Ok(events)) => {
                    self.opened.pending.extend(events);
                    if self.opened.source.is_none() {
                        self.end(Ok(()));
                    }
                }
                Some(Err(message)) => {
                    let error = self.provider.stream_fault(message, false);
                    tracing::warn!(provider = %self.provider.name, %error, "provider answer broke off");
                    self.end(Err(&error));
                    return Some((Err(error), self));
                }
                None => self.end(Ok(())),
            }
        }
    }

    fn end(&mut self, result: Result<(), &ProviderError>) {
        let provider = &self.provider;
        provider.stats.latency.record(self.started.elapsed());
        match result {
            Ok(()) => {
                provider.stats.completed.fetch_add(1, Ordering::Relaxed);
                provider.breaker.on_success();
            }
            Err(error) => {
                provider.stats.record_error(error);
                provider.breaker.on_failure();
            }
        }
        self.opened.source = None;
        self.outcome = Some(result.is_ok());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            // The caller stopped reading (cancelled): says nothing about the provider.
            self.provider.breaker.on_neutral(self.pass);
        }
    }
}
