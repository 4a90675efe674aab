//! Token counting with the tokenizer of the model's family (tiktoken-rs, tables compiled in:
//! nothing is downloaded). OpenAI's current families (`gpt-4o`, `gpt-4.1`, `gpt-5`, `o1`, `o3`,
//! `o4`, `gpt-oss`) use `o200k_base`; older OpenAI models use `cl100k_base`. Other families
//! (Llama, Mixtral, Claude, Gemini... through Groq or OpenRouter) have their own tokenizers that
//! are not published for tiktoken: `cl100k_base` is used as an estimate, which is why the
//! context budget keeps `reserve_tokens` free.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

/// Tokens the chat format adds per message (role and separators), as OpenAI documents it.
pub const PER_MESSAGE: u32 = 4;
/// Tokens that prime the model's reply.
pub const REPLY_PRIMING: u32 = 3;

/// Texts from this many bytes are counted off the runtime's threads.
const LONG_TEXT: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    /// The encoding of `model`; a `vendor/` prefix (OpenRouter) is ignored.
    pub fn for_model(model: &str) -> Self {
        let name = model
            .rsplit('/')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        let name = name.strip_prefix("ft:").unwrap_or(&name);
        let o200k = [
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "o1",
            "o3",
            "o4",
        ];
        if o200k.iter().any(|family| {
            name.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', ':', '.', '_']))
        }) {
            Self::O200kBase
        } else {
            Self::Cl100kBase
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => "o200k_base",
            Self::Cl100kBase => "cl100k_base",
        }
    }

    /// Tokens of `text`; the first call per encoding builds its tables (about half a second
    /// in release builds): call [`Encoding::load`] off the runtime first.
    pub fn count(self, text: &str) -> u32 {
        let tokens = self.bpe().encode_ordinary(text).len();
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }

    /// Like [`Encoding::count`], on a blocking thread for a long text (counting a few
    /// megabytes takes long enough to stall the other tasks of a runtime thread).
    pub async fn count_long(self, text: &str) -> u32 {
        if text.len() < LONG_TEXT {
            return self.count(text);
        }
        let text = text.to_string();
        tokio::task::spawn_blocking(move || self.count(&text))
            .await
            .unwrap_or(u32::MAX)
    }

    /// Builds the tables on a blocking thread if they are not built yet.
    pub async fn load(self) {
        if self.cell().get().is_none() {
            let _ = tokio::task::spawn_blocking(move || self.bpe()).await;
        }
    }

    fn cell(self) -> &'static OnceLock<&'static CoreBPE> {
        static O200K: OnceLock<&'static CoreBPE> = OnceLock::new();
        static CL100K: OnceLock<&'static CoreBPE> = OnceLock::new();
        match self {
            Self::O200kBase => &O200K,
            Self::Cl100kBase => &CL100K,
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        self.cell().get_or_init(|| match self {
            Self::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Self::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_family_gets_its_encoding() {
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "openai/gpt-4.1-nano",
            "o3",
            "o4-mini",
            "gpt-5",
            "GPT-5.1",
        ] {
            assert_eq!(Encoding::for_model(model), Encoding::O200kBase, "{model}");
        }
        for model in [
            "gpt-4",
            "gpt-3.5-turbo",
            "llama-3.3-70b-versatile",
            "meta-llama/llama-3.1-8b",
            "omni",
            "o1x",
        ] {
            assert_eq!(Encoding::for_model(model), Encoding::Cl100kBase, "{model}");
        }
    }

    #[test]
    fn counts_are_real_token_counts() {
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count(""), 0);
        // Not a character count: a long common word is one token.
        assert!(Encoding::Cl100kBase.count("internationalization") < 6);
    }
}
