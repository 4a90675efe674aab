use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, "test.yaml", HashMap::new())
}

fn parse_with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    Config::from_yaml(text, "test.yaml", env)
}

fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_shipped_config_yaml_equals_the_built_in_defaults() {
    let shipped = parse(EMBEDDED_CONFIG).expect("shipped config.yaml parses");
    assert_eq!(shipped, Config::default());
}

#[test]
fn the_load_test_config_in_benches_is_valid_and_uses_the_mock() {
    let config = parse(include_str!("../../benches/loadtest.yaml")).expect("benches/loadtest.yaml");
    assert_eq!(config.llm.active, "mock");
    assert_eq!(config.chat.websocket.max_connections, 12_000);
}

#[test]
fn the_real_engine_bench_config_is_valid_and_chooses_the_engine() {
    let config = parse(include_str!("../../benches/real_engine.yaml")).expect("real_engine.yaml");
    assert!(config.llm.chosen);
    assert_eq!(config.llm.providers["llamacpp"].max_tokens, Some(32));
    assert_eq!(config.chat.service.system_prompt, "");
}

#[test]
fn an_empty_file_gives_the_defaults() {
    assert_eq!(parse("").expect("empty is fine"), Config::default());
    assert_eq!(
        parse("# only a comment\n").expect("comment is fine"),
        Config::default()
    );
}

#[test]
fn the_anchor_provider_limits_are_the_defaults() {
    let config = Config::default();
    let limits = |name: &str| {
        let h = &config.llm.providers[name].http_client;
        (
            h.max_connections,
            h.concurrent_requests,
            h.requests_per_minute,
        )
    };
    assert_eq!(limits("openai"), (50, 25, 3500));
    assert_eq!(limits("groq"), (30, 15, 600));
    assert_eq!(limits("openrouter"), (20, 20, 2000));
    assert_eq!(
        config.llm.providers["groq"].http_client.read_timeout,
        Duration::from_secs(90)
    );
}

#[test]
fn a_partial_provider_entry_keeps_its_preset() {
    let config = parse("llm:\n  active: groq\n  providers:\n    groq:\n      model: mixtral\n")
        .expect("valid");
    let groq = &config.llm.providers["groq"];
    assert_eq!(groq.model, "mixtral");
    assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
    assert_eq!(groq.http_client.read_timeout, Duration::from_secs(90));
    assert_eq!(groq.http_client.concurrent_requests, 15);
}

#[test]
fn an_unknown_key_is_refused_with_its_path_and_line() {
    let message = error_of("logging:\n  level: info\n  formatt: json\n");
    assert!(message.contains("logging.formatt"), "{message}");
    assert!(message.contains("unknown field"), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn a_wrong_type_is_refused_with_its_path() {
    let message = error_of("server:\n  port: eighty\n");
    assert!(message.contains("server.port"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn a_nested_unknown_key_names_the_whole_path() {
    let yaml = "llm:\n  providers:\n    openai:\n      http_client:\n        max_conections: 3\n";
    let message = error_of(yaml);
    assert!(
        message.contains("llm.providers.openai.http_client.max_conections"),
        "{message}"
    );
}

#[test]
fn malformed_yaml_reports_line_and_column() {
    let message = error_of("server:\n  host: \"127.0.0.1\n  port: 1\n");
    assert!(message.starts_with("test.yaml: "), "{message}");
    assert!(message.contains("line 2, column"), "{message}");
}

#[test]
fn zero_readers_is_out_of_range_and_named_where_the_file_wrote_it() {
    let yaml = "database:\n  sqlite:\n    connection_pool:\n      max_readers: 0\n";
    assert_eq!(
        error_of(yaml),
        "test.yaml: database.sqlite.connection_pool.max_readers must be between 1 and 1024 (got 0)"
    );
    let legacy =
        "chat:\n  service:\n    repository:\n      connection_pool:\n        max_readers: 0\n";
    assert_eq!(
        error_of(legacy),
        "test.yaml: chat.service.repository.connection_pool.max_readers must be between 1 and 1024 (got 0)"
    );
}

#[test]
fn a_quiet_time_under_100ms_is_refused_and_zero_is_never() {
    let yaml = "database:\n  sqlite:\n    release_memory_when_quiet: 5ms\n";
    assert_eq!(
        error_of(yaml),
        "test.yaml: database.sqlite.release_memory_when_quiet must be between 100ms and 1 day, or 0 (never release)"
    );
    let never = "database:\n  sqlite:\n    release_memory_when_quiet: 0\n";
    let config = parse(never).expect("0 is valid");
    assert!(config.database.sqlite().release_memory_when_quiet.is_zero());
}

#[test]
fn the_database_is_the_flag_then_the_environment_then_the_file_then_the_default() {
    let default = parse("").expect("defaults");
    assert_eq!(default.database.url().to_string(), "sqlite:./data/chat.db");
    let file = "database:\n  url: sqlite:/srv/file.db\n";
    assert_eq!(
        parse(file).expect("file").database.url().to_string(),
        "sqlite:/srv/file.db"
    );
    let env = [(DATABASE_URL_VARIABLE, "sqlite:/srv/env.db")];
    let mut config = parse_with_env(file, &env).expect("environment");
    assert_eq!(config.database.url().to_string(), "sqlite:/srv/env.db");
    config.use_database("sqlite:/srv/flag.db").expect("flag");
    assert_eq!(
        config.sqlite_store().expect("sqlite").path,
        std::path::Path::new("/srv/flag.db")
    );
    // Each names itself when what it holds is not a URL.
    let bad_env = parse_with_env(file, &[(DATABASE_URL_VARIABLE, "mysql://x/y")])
        .expect_err("not a database URL")
        .to_string();
    assert!(bad_env.contains(DATABASE_URL_VARIABLE), "{bad_env}");
    let bad_flag = config
        .use_database("chat.db")
        .expect_err("no scheme")
        .to_string();
    assert!(bad_flag.starts_with("--database"), "{bad_flag}");
    assert!(error_of("database:\n  url: nope\n").contains("database.url"));
}

#[test]
fn the_old_repository_keys_still_load_with_a_warning_and_never_beside_the_new_ones() {
    let legacy =
        "chat:\n  service:\n    repository:\n      path: /srv/old.db\n      synchronous: full\n";
    let config = parse(legacy).expect("still accepted");
    let store = config.sqlite_store().expect("sqlite");
    assert_eq!(store.path, std::path::Path::new("/srv/old.db"));
    assert_eq!(store.sqlite.synchronous, Synchronous::Full);
    let warnings = config.ignored_keys();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("database.url: sqlite:/srv/old.db")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("database.sqlite")),
        "{warnings:?}"
    );
    let shown = config.to_redacted_yaml();
    assert!(!shown.contains("repository"), "{shown}");
    assert!(shown.contains("url: sqlite:/srv/old.db"), "{shown}");

    // A path alone is one warning; a key the old section never had is refused as before.
    let path_only = parse("chat:\n  service:\n    repository:\n      path: /srv/old.db\n")
        .expect("a path alone");
    assert_eq!(path_only.ignored_keys().len(), 1);
    let typo = error_of("chat:\n  service:\n    repository:\n      memory_budget_mb: 64\n");
    assert!(typo.contains("memory_budget_mb"), "{typo}");

    let both = format!("{legacy}database:\n  url: sqlite:/srv/new.db\n");
    let message = error_of(&both);
    assert!(
        message.contains("database.url") && message.contains("chat.service.repository.path"),
        "{message}"
    );
    let both = format!("{legacy}database:\n  sqlite:\n    synchronous: normal\n");
    let message = error_of(&both);
    assert!(
        message.contains("database.sqlite") && message.contains("chat.service.repository"),
        "{message}"
    );
}

#[test]
fn a_postgres_url_is_shown_without_its_password_and_refused_until_its_backend_exists() {
    let yaml = "database:\n  url: postgres://chat:hunter2@db.internal:5432/chat?sslmode=require\n";
    let config = parse(yaml).expect("a valid URL");
    let shown = config.to_redacted_yaml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("db.internal:5432/chat"), "{shown}");
    let refused = config.sqlite_store().expect_err("not built").to_string();
    assert!(refused.contains("PostgreSQL"), "{refused}");
    assert!(!refused.contains("hunter2"), "{refused}");
    let bad = error_of("database:\n  postgres:\n    max_connections: 0\n");
    assert!(bad.contains("database.postgres.max_connections"), "{bad}");
}

#[test]
fn an_active_provider_that_does_not_exist_is_refused() {
    let message = error_of("llm:\n  active: anthropic\n");
    assert!(
        message.contains("llm.active names `anthropic`"),
        "{message}"
    );
}

#[test]
fn a_custom_provider_needs_a_base_url() {
    let yaml = "llm:\n  active: local\n  providers:\n    local:\n      model: llama\n";
    let message = error_of(yaml);
    assert!(
        message.contains("llm.providers.local.base_url must be an http(s) URL"),
        "{message}"
    );
    let ok = "llm:\n  active: local\n  providers:\n    local:\n      base_url: http://127.0.0.1:8080/v1\n      model: llama\n";
    let config = parse(ok).expect("valid");
    assert_eq!(config.llm.providers["local"].api_key_env, None);
}

#[test]
fn an_mcp_server_needs_exactly_one_transport() {
    let both = "mcp:\n  servers:\n    x:\n      command: a\n      url: http://b\n";
    assert!(error_of(both).contains("mcp.servers.x has both"));
    let none = "mcp:\n  servers:\n    x:\n      args: [a]\n";
    assert!(error_of(none).contains("mcp.servers.x needs `command`"));
}

#[test]
fn interpolation_takes_the_environment_and_defaults() {
    let yaml = "server:\n  host: ${BIND_HOST}\n  port: ${BIND_PORT:-9000}\n";
    let config = parse_with_env(yaml, &[("BIND_HOST", "0.0.0.0")]).expect("valid");
    assert_eq!(config.server.host, "0.0.0.0");
    assert_eq!(config.server.port, 9000);
    let config = parse_with_env(yaml, &[("BIND_HOST", "::1"), ("BIND_PORT", "7000")]).expect("ok");
    assert_eq!(config.server.port, 7000);
}

#[test]
fn interpolation_works_inside_quoted_strings() {
    let yaml = "chat:\n  service:\n    system_prompt: \"Hi ${USER_NAME:-friend}\"\n";
    let config = parse_with_env(yaml, &[]).expect("valid");
    assert_eq!(config.chat.service.system_prompt, "Hi friend");
}

#[test]
fn an_unset_variable_without_default_is_named() {
    let message = error_of("server:\n  host: ${SURELY_UNSET_VAR_42}\n");
    assert!(message.contains("SURELY_UNSET_VAR_42"), "{message}");
}

#[test]
fn check_config_output_redacts_secrets_and_parses_back() {
    let yaml =
        "mcp:\n  servers:\n    gh:\n      command: gh-mcp\n      env: {GITHUB_TOKEN: ghp_secret}\n";
    let config = parse(yaml).expect("valid");
    let printed = config.to_redacted_yaml();
    assert!(!printed.contains("ghp_secret"), "{printed}");
    assert!(printed.contains(secret::REDACTED), "{printed}");
    let mut reparsed = parse(&printed).expect("printed config parses");
    assert_eq!(reparsed.chat, config.chat);
    // The effective provider is printed, so the printed file chooses it.
    assert!(reparsed.llm.chosen && !config.llm.chosen);
    reparsed.llm.chosen = false;
    assert_eq!(reparsed.llm, config.llm);
}

#[test]
fn durations_accept_seconds_and_humane_strings() {
    let yaml = "chat:\n  websocket:\n    ping_interval: 5\n    ping_timeout: 1500ms\n";
    let config = parse(yaml).expect("valid");
    assert_eq!(config.chat.websocket.ping_interval, Duration::from_secs(5));
    assert_eq!(
        config.chat.websocket.ping_timeout,
        Duration::from_millis(1500)
    );
}

#[test]
fn a_provider_lists_its_models_or_takes_any_name() {
    let yaml = r#"
llm:
  active: local
  providers:
    local: {base_url: "http://127.0.0.1:1/v1", model: "small", api_key_env: null, models: ["big"]}
    router: {base_url: "http://127.0.0.1:2/v1", model: "a/b", api_key_env: null, models: "*"}
"#;
    let config = parse(yaml).expect("valid");
    let local = &config.llm.providers["local"];
    assert_eq!(local.models, Models::Listed(vec!["big".into()]));
    assert!(local.models.accepts("small", &local.model));
    assert!(local.models.accepts("big", &local.model));
    assert!(!local.models.accepts("huge", &local.model));
    assert_eq!(config.llm.providers["router"].models, Models::Any);
    let wrong = "llm:\n  providers:\n    local: {base_url: \"http://x/v1\", models: \"all\"}\n";
    let error = error_of(wrong);
    assert!(
        error.contains("models") && error.contains("\"*\""),
        "{error}"
    );
}

#[test]
fn tool_calls_are_native_unless_an_entry_says_text() {
    let config = parse("llm:\n  active: ollama\n  providers:\n    ollama: {tool_calls: text}\n")
        .expect("parses");
    assert_eq!(
        config.llm.providers["ollama"].tool_calls,
        super::ToolCallMode::Text
    );
    let config = parse("llm:\n  active: ollama\n").expect("parses");
    assert_eq!(
        config.llm.providers["ollama"].tool_calls,
        super::ToolCallMode::Native
    );
    let error = error_of("llm:\n  providers:\n    ollama: {tool_calls: xml}\n");
    assert!(
        error.contains("tool_calls") && error.contains("native") && error.contains("text"),
        "{error}"
    );
}

#[test]
fn a_local_preset_needs_no_entry_of_its_own() {
    let config = parse("llm:\n  active: lmstudio\n  fallback: [ollama]\n").expect("parses");
    let lmstudio = &config.llm.providers["lmstudio"];
    assert_eq!(lmstudio.base_url, "http://127.0.0.1:1234/v1");
    assert_eq!(lmstudio.api_key_env, None);
    assert_eq!(lmstudio.models, Models::Any);
    assert_eq!(
        config.llm.providers["ollama"].base_url,
        "http://127.0.0.1:11434/v1"
    );
    // An entry overrides only what it names.
    let config = parse("llm:\n  active: ollama\n  providers:\n    ollama: {model: qwen2.5}\n")
        .expect("parses");
    let ollama = &config.llm.providers["ollama"];
    assert_eq!(
        (ollama.model.as_str(), ollama.base_url.as_str()),
        ("qwen2.5", "http://127.0.0.1:11434/v1")
    );
    assert_eq!(ollama.http_client.read_timeout, Duration::from_secs(300));
}

#[test]
fn the_runtime_gets_the_threads_asked_for_or_one_fewer_than_the_cpus() {
    let config = parse("server:\n  worker_threads: 3\n").expect("3 threads");
    assert_eq!(config.server.runtime_threads(), 3);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert_eq!(
        Config::default().server.runtime_threads(),
        cpus.saturating_sub(1).max(1)
    );
    let message = error_of("server:\n  worker_threads: 5000\n");
    assert!(message.contains("server.worker_threads"), "{message}");
}

#[test]
fn a_context_budget_too_small_for_any_message_is_refused() {
    // A 2k model's window with the default reserve leaves 48 tokens: every message refused.
    let message = error_of("chat:\n  service:\n    context:\n      max_tokens: 2048\n");
    assert!(
        message.contains("chat.service.context.reserve_tokens"),
        "{message}"
    );
    assert!(message.contains("leaves 48"), "{message}");
    parse("chat:\n  service:\n    context:\n      max_tokens: 2048\n      reserve_tokens: 512\n")
        .expect("1,536 tokens for the prompt is enough");
}

#[test]
fn a_key_no_longer_read_still_loads_and_is_named_as_ignored() {
    let config = parse("server:\n  http:\n    realtime_front: true\n").expect("still accepted");
    let ignored = config.ignored_keys();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(
        ignored[0].contains("server.http.realtime_front"),
        "{ignored:?}"
    );
    assert!(!config.to_redacted_yaml().contains("realtime_front"));
    assert!(parse("").expect("defaults").ignored_keys().is_empty());
}
