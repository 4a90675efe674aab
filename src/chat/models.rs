//! The providers and the models each offers, for a model picker.

use serde::Serialize;

use super::ChatService;

/// Every provider, the active one named as `default_provider`.
#[derive(Debug, Serialize)]
pub struct ModelCatalog<'a> {
    pub default_provider: &'a str,
    pub providers: Vec<ProviderModels<'a>>,
    /// The local model server found at start, if any.
    pub found_locally: Option<&'a str>,
}

/// A provider as a model picker shows it.
#[derive(Debug, Serialize)]
pub struct ProviderModels<'a> {
    pub name: &'a str,
    /// The model used when a request names none.
    pub default_model: &'a str,
    /// The models it offers (the default first).
    pub models: Vec<&'a str>,
    /// Any model name is accepted (`models: "*"`), beyond those listed.
    pub any_model: bool,
    /// A request can be sent: its key is set, or it needs none.
    pub configured: bool,
    /// The environment variable its key comes from, to say what to set when it is not.
    pub key_variable: &'a str,
}

impl ChatService {
    pub fn models(&self) -> ModelCatalog<'_> {
        let providers = self
            .providers
            .all()
            .map(|provider| {
                let (models, any_model) = provider.model_names();
                ProviderModels {
                    name: provider.name(),
                    default_model: provider.model(),
                    models,
                    any_model,
                    configured: provider.configured(),
                    key_variable: provider.key_variable(),
                }
            })
            .collect();
        ModelCatalog {
            default_provider: self.providers.active(),
            providers,
            found_locally: self.providers.found_locally(),
        }
    }
}
