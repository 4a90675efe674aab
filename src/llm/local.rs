//! Local models first: at start, when the active provider has no API key, the default loopback
//! ports of the local model servers with a preset (Ollama, llama.cpp, LM Studio, vLLM) are
//! tried, and one that answers is named in the log with how to use it. Only 127.0.0.1 is
//! contacted; nothing is changed.

use std::time::Duration;

use super::Providers;
use crate::config::{LOCAL_PRESETS, LocalPreset};

/// How long a port may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The hint to log, if the active provider has no key and a local server answers. `own_port`
/// is skipped (this server answers `/v1/models` too).
pub async fn hint(providers: &Providers, own_port: u16) -> Option<String> {
    let active = providers.get(providers.active())?;
    if active.configured() {
        return None;
    }
    let candidates: Vec<&LocalPreset> = LOCAL_PRESETS
        .iter()
        .filter(|preset| preset.port != own_port && preset.name != active.name())
        .collect();
    let answers = futures::future::join_all(candidates.iter().map(|p| answers(p.port))).await;
    let found = candidates
        .into_iter()
        .zip(answers)
        .find_map(|(preset, answered)| answered.then_some(preset))?;
    Some(format!(
        "the active provider `{}` has no API key (set {}), but {} answers at {}: start with \
         `mcp-platform --provider {}`, or put `llm: {{active: {}}}` in config.yaml (it asks for \
         model `{}`; set llm.providers.{}.model to one the server has)",
        active.name(),
        active.key_variable(),
        found.label,
        found.base_url(),
        found.name,
        found.name,
        found.model,
        found.name,
    ))
}

/// Whether an HTTP server answers on the loopback `port` (any status counts).
async fn answers(port: u16) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .no_proxy()
        .build()
    else {
        return false;
    };
    client
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlmConfig;

    #[tokio::test]
    async fn no_hint_when_the_active_provider_has_its_key() {
        let providers = Providers::new(&LlmConfig::default(), |name| {
            (name == "OPENAI_API_KEY").then(|| "sk-test".to_string())
        });
        assert_eq!(hint(&providers, 0).await, None);
    }
}
