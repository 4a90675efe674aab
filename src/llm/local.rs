//! Local models first. At start, when no provider was chosen (`--provider`, or `llm.active` in
//! the file read) and the default one has no API key, the loopback ports of the local engines
//! with a preset (Ollama, llama.cpp, LM Studio, vLLM: their usual port, or the one their entry's
//! `base_url` names) are tried by TCP connect; the
//! first engine that answers is used: its models from its `/v1/models` (asked once, and only
//! then: any request interrupts a llama-cpp-python generation), its context window where it
//! says it (llama.cpp's `/props`, vLLM's `max_model_len`). A chosen provider is never
//! overridden; when it has no key and an engine answers, the log says how to use the engine.
//! Only 127.0.0.1 is contacted.

use std::time::Duration;

use serde_json::Value;

use super::Providers;
use crate::config::{LlmConfig, LocalPreset, Models, ProviderConfig};

/// How long a port may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long an engine may take to list its models or say its window.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Uses a local engine when nothing was chosen and the default provider cannot be used; what
/// was found, in words, when it did ("llama.cpp server at 127.0.0.1:8080, model X"). `env`
/// looks up API keys; `own_port` (this server's) is never probed.
pub async fn adopt(
    llm: &mut LlmConfig,
    presets: &[LocalPreset],
    own_port: u16,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if llm.chosen
        || llm
            .providers
            .get(&llm.active)
            .is_some_and(|p| has_key(p, env))
    {
        return None;
    }
    let candidates: Vec<LocalPreset> = presets
        .iter()
        .map(|p| at_configured_port(llm, *p))
        .collect();
    let preset = answering(&candidates, own_port).await?;
    let client = client()?;
    let listed = list_models(&client, preset).await;
    let Some((models, vllm_window)) = listed.filter(|(models, _)| !models.is_empty()) else {
        tracing::info!(
            "something answers on 127.0.0.1:{} but lists no models at /v1/models: not used",
            preset.port
        );
        return None;
    };
    let mut entry = llm
        .providers
        .remove(preset.name)
        .unwrap_or_else(|| ProviderConfig::preset(preset.name));
    if entry.model == preset.model {
        entry.model.clone_from(&models[0]);
    }
    let window = match vllm_window {
        Some(window) => Some(window),
        None if preset.name == "llamacpp" => llama_cpp_window(&client, preset).await,
        None => None,
    };
    entry.context_window = entry.context_window.or(window);
    if let Some(window) = entry.context_window {
        // Room for the prompt too: at most a quarter of the window for the answer.
        entry.max_tokens = Some(entry.max_tokens.unwrap_or(u32::MAX).min(window / 4));
    }
    let found = format!(
        "{} at 127.0.0.1:{}, model {}{}",
        preset.label,
        preset.port,
        entry.model,
        entry
            .context_window
            .map(|w| format!(" ({w}-token context)"))
            .unwrap_or_default(),
    );
    entry.models = Models::Listed(models);
    llm.providers.insert(preset.name.to_string(), entry);
    llm.active = preset.name.to_string();
    llm.found_locally = Some(found.clone());
    Some(found)
}

/// The hint to log, if the chosen active provider has no key and a local engine answers.
pub async fn hint(providers: &Providers, presets: &[LocalPreset], own_port: u16) -> Option<String> {
    let active = providers.get(providers.active())?;
    if active.configured() {
        return None;
    }
    let others: Vec<LocalPreset> = presets
        .iter()
        .filter(|preset| preset.name != active.name())
        .copied()
        .collect();
    let found = answering(&others, own_port).await?;
    Some(format!(
        "the active provider `{}` has no API key (set {}), but {} answers at {}: start with \
         `mcp-platform --provider {}`, or put `llm: {{active: {}}}` in config.yaml",
        active.name(),
        active.key_variable(),
        found.label,
        found.base_url(),
        found.name,
        found.name,
    ))
}

/// `preset` at the loopback port its entry's `base_url` names, if it has such an entry.
fn at_configured_port(llm: &LlmConfig, mut preset: LocalPreset) -> LocalPreset {
    let port = llm
        .providers
        .get(preset.name)
        .and_then(|entry| reqwest::Url::parse(&entry.base_url).ok())
        .filter(|url| matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
        .and_then(|url| url.port_or_known_default());
    if let Some(port) = port {
        preset.port = port;
    }
    preset
}

fn has_key(entry: &ProviderConfig, env: &dyn Fn(&str) -> Option<String>) -> bool {
    entry
        .api_key_env
        .as_deref()
        .is_none_or(|var| env(var).is_some_and(|key| !key.trim().is_empty()))
}

/// The first of `presets`, in their order, whose port accepts a TCP connection (all tried at
/// once); `own_port` is skipped.
async fn answering(presets: &[LocalPreset], own_port: u16) -> Option<&LocalPreset> {
    let candidates: Vec<&LocalPreset> = presets.iter().filter(|p| p.port != own_port).collect();
    let open = futures::future::join_all(candidates.iter().map(|p| accepts(p.port))).await;
    candidates
        .into_iter()
        .zip(open)
        .find_map(|(preset, open)| open.then_some(preset))
}

async fn accepts(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

fn client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(ASK_TIMEOUT)
        .no_proxy()
        .build()
        .ok()
}

/// The ids of `/v1/models`, and the window vLLM gives beside them (`max_model_len`).
async fn list_models(
    client: &reqwest::Client,
    preset: &LocalPreset,
) -> Option<(Vec<String>, Option<u32>)> {
    let url = format!("{}/models", preset.base_url());
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    let data = body["data"].as_array()?;
    let models = data
        .iter()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect();
    let window = data
        .first()
        .and_then(|m| m["max_model_len"].as_u64())
        .and_then(|w| u32::try_from(w).ok());
    Some((models, window))
}

/// llama.cpp's `llama-server` says its context size at `/props`.
async fn llama_cpp_window(client: &reqwest::Client, preset: &LocalPreset) -> Option<u32> {
    let url = format!("http://127.0.0.1:{}/props", preset.port);
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    body["default_generation_settings"]["n_ctx"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LOCAL_PRESETS;

    #[tokio::test]
    async fn no_hint_when_the_active_provider_has_its_key() {
        let providers = Providers::new(&LlmConfig::default(), |name| {
            (name == "OPENAI_API_KEY").then(|| "sk-test".to_string())
        });
        assert_eq!(hint(&providers, LOCAL_PRESETS, 0).await, None);
    }

    #[tokio::test]
    async fn a_chosen_provider_or_one_with_its_key_is_never_replaced() {
        let mut chosen = LlmConfig {
            chosen: true,
            ..LlmConfig::default()
        };
        assert_eq!(adopt(&mut chosen, LOCAL_PRESETS, 0, &|_| None).await, None);
        assert_eq!(chosen.active, "openai");
        let mut keyed = LlmConfig::default();
        let key = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-test".to_string());
        assert_eq!(adopt(&mut keyed, LOCAL_PRESETS, 0, &key).await, None);
        assert_eq!(keyed.active, "openai");
    }
}
