//! Token counting with the tokenizer of the model's family (tiktoken's ranks, compiled into
//! tiktoken-rs: nothing is downloaded; counted by [`bpe::CompactBpe`], which holds them in a
//! tenth of the memory). OpenAI's current families (`gpt-4o`, `gpt-4.1`, `gpt-5`, `o1`, `o3`,
//! `o4`, `gpt-oss`) use `o200k_base`; older OpenAI models use `cl100k_base`. Other families
//! (Llama, Mixtral, Claude, Gemini... through Groq or OpenRouter) have their own tokenizers that
//! are not published for tiktoken: `cl100k_base` is used as an estimate, which is why the
//! context budget keeps `reserve_tokens` free.

mod bpe;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bpe::CompactBpe;

/// Tokens the chat format adds per message (role and separators), as OpenAI documents it.
pub const PER_MESSAGE: u32 = 4;
/// Tokens that prime the model's reply.
pub const REPLY_PRIMING: u32 = 3;

/// Texts from this many bytes are counted off the runtime's threads.
const LONG_TEXT: usize = 64 << 10;

/// `cl100k_base`'s pre-tokenising pattern, as tiktoken defines it.
const CL100K_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

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

    /// Tokens of `text`; the first call per encoding builds its tables (about a tenth of a
    /// second in release builds): call [`Encoding::load`] off the runtime first.
    pub fn count(self, text: &str) -> u32 {
        u32::try_from(self.bpe().count(text)).unwrap_or(u32::MAX)
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

    /// Starts building the tables in the background, once, if they are not built yet: a
    /// socket that may chat soon calls this so that its first turn does not wait for them,
    /// and a server nobody uses never builds them.
    pub fn preload(self) {
        static STARTED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
        let started = &STARTED[self as usize];
        if self.cell().get().is_none() && !started.swap(true, Ordering::Relaxed) {
            tokio::spawn(self.load());
        }
    }

    fn cell(self) -> &'static OnceLock<CompactBpe> {
        static O200K: OnceLock<CompactBpe> = OnceLock::new();
        static CL100K: OnceLock<CompactBpe> = OnceLock::new();
        match self {
            Self::O200kBase => &O200K,
            Self::Cl100kBase => &CL100K,
        }
    }

    fn bpe(self) -> &'static CompactBpe {
        self.cell().get_or_init(|| {
            let table = self.build();
            // Building read tiktoken-rs's tables (tens of megabytes, now freed): give their
            // pages back.
            crate::process::release_free_memory();
            table
        })
    }

    /// Reads the ranks out of tiktoken-rs's tables and keeps them compactly; tiktoken-rs's
    /// own copy is dropped at the end. Ordinary ranks are contiguous from 0; the first rank
    /// that does not decode ends them (the special tokens come after a gap).
    fn build(self) -> CompactBpe {
        let (core, pattern) = match self {
            Self::O200kBase => (tiktoken_rs::o200k_base(), tiktoken_rs::O200K_BASE_PAT_STR),
            Self::Cl100kBase => (tiktoken_rs::cl100k_base(), CL100K_PATTERN),
        };
        let core = core.expect("tiktoken-rs's compiled-in tables parse");
        let special = core.special_tokens();
        let mut tokens = Vec::new();
        for rank in 0.. {
            match core.decode_bytes(&[rank]) {
                Ok(bytes) if !std::str::from_utf8(&bytes).is_ok_and(|s| special.contains(s)) => {
                    tokens.push(bytes);
                }
                _ => break,
            }
        }
        drop(core);
        CompactBpe::new(&tokens, pattern).expect("tiktoken's patterns compile")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts of every kind the patterns treat differently: prose, code, numbers, mixed
    /// scripts, emoji, whitespace runs, contractions, and long runs of one character.
    fn samples() -> Vec<String> {
        let mut texts: Vec<String> = [
            include_str!("../../../README.md"),
            include_str!("../../../config.yaml"),
            include_str!("mod.rs"),
            "Hello, world! I'm here; they're THERE. We'll see: 12345678 + 3.14159 = ?",
            "日本語のテキストと한국어 텍스트, русский текст, العربية, emoji 🎉🚀👩‍💻 and \u{0}",
            "   leading spaces\n\n\n\t\ttabs \r\n crlf   trailing   ",
            "x",
            "",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        texts.push("a".repeat(5000));
        texts.push(" ".repeat(3000));
        texts.push("ab1 ".repeat(700));
        texts.push("🎉".repeat(400));
        texts.push("=".repeat(2000) + "\n");
        // Pseudo-random bytes as text: every byte value, valid UTF-8 only.
        let mut seed = 0x2545_f491_u32;
        let noise: String = (0..20_000)
            .filter_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                char::from_u32(seed % 0x3000)
            })
            .collect();
        texts.push(noise);
        texts
    }

    #[test]
    fn counts_equal_tiktoken_exactly() {
        let cases = [
            (Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
            (Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
        ];
        for (encoding, reference) in cases {
            for text in samples() {
                let expected = reference.encode_ordinary(&text).len();
                let got = encoding.count(&text) as usize;
                assert_eq!(
                    got,
                    expected,
                    "{} on {:?}",
                    encoding.name(),
                    &text[..text.len().min(60)]
                );
            }
        }
    }

    #[test]
    fn tables_hold_every_ordinary_rank_compactly() {
        // o200k_base has 199,998 ordinary tokens, cl100k_base 100,256.
        let o200k = Encoding::O200kBase.bpe();
        let cl100k = Encoding::Cl100kBase.bpe();
        assert!(o200k.table_bytes() < 6 << 20, "{}", o200k.table_bytes());
        assert!(cl100k.table_bytes() < 3 << 20, "{}", cl100k.table_bytes());
        assert_eq!(o200k.tokens(), 199_998);
        assert_eq!(cl100k.tokens(), 100_256);
    }

    #[test]
    fn a_megabyte_of_one_character_counts_in_linear_time() {
        // One pre-token piece of a megabyte: quadratic merging would take hours.
        let text = "z".repeat(1 << 20);
        let count = Encoding::Cl100kBase.count(&text);
        assert!(count > 1000 && count < (1 << 20), "{count}");
    }

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
