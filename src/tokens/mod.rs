//! Token counting with the tokenizer of the model's family (tiktoken's ranks, compiled into
//! tiktoken-rs: nothing is downloaded; counted by `bpe::CompactBpe`, which holds them in a
//! tenth of the memory). OpenAI's current families (`gpt-4o`, `gpt-4.1`, `gpt-5`, `o1`, `o3`,
//! `o4`, `gpt-oss`) use `o200k_base`; older OpenAI models use `cl100k_base`. Other families
//! (Llama, Mixtral, Claude, Gemini... through Groq or OpenRouter) have their own tokenizers that
//! are not published for tiktoken: `cl100k_base` is used as an estimate, which is why the
//! context budget keeps `reserve_tokens` free.

mod bpe;
mod layout;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bpe::CompactBpe;

/// Tokens the chat format adds per message (role and separators), as OpenAI documents it.
pub const PER_MESSAGE: u32 = 4;
/// Tokens that prime the model's reply.
pub const REPLY_PRIMING: u32 = 3;

/// Texts from this many bytes are counted off the runtime's threads.
const LONG_TEXT: usize = 64 << 10;

/// The tables `build.rs` wrote from tiktoken-rs's ([`layout`]).
macro_rules! tables {
    ($name:literal) => {
        [
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bytes")).as_slice(),
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".starts")).as_slice(),
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".slots")).as_slice(),
        ]
    };
}
const O200K_TABLES: [&[u8]; 3] = tables!("o200k_base");
const CL100K_TABLES: [&[u8]; 3] = tables!("cl100k_base");

/// `o200k_base`'s pre-tokenising pattern, as tiktoken defines it.
const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+"
);

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

    /// Tokens of `text`; the first call per encoding compiles its pre-tokenising pattern (a few
    /// milliseconds; the tables are in the binary): call [`Encoding::load`] off the runtime
    /// first.
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

    /// Compiles the pattern on a blocking thread if it is not compiled yet. Callers that
    /// arrive while it compiles wait for that one thread: ten first turns at once used to
    /// start ten blocking threads that each waited on the compile.
    pub async fn load(self) {
        static COMPILING: [tokio::sync::Mutex<()>; 2] = [
            tokio::sync::Mutex::const_new(()),
            tokio::sync::Mutex::const_new(()),
        ];
        if self.cell().get().is_some() {
            return;
        }
        let _compiling = COMPILING[self as usize].lock().await;
        // Compiled while this caller waited; if not (the compile's thread panicked), this
        // caller tries again.
        if self.cell().get().is_none() {
            let _ = tokio::task::spawn_blocking(move || self.bpe()).await;
        }
    }

    /// Starts compiling the pattern in the background, once, if it is not compiled yet: a
    /// socket that may chat soon calls this so that its first turn does not wait for it,
    /// and a server nobody uses never compiles it.
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
            let (tables, pattern) = match self {
                Self::O200kBase => (O200K_TABLES, O200K_PATTERN),
                Self::Cl100kBase => (CL100K_TABLES, CL100K_PATTERN),
            };
            CompactBpe::new(tables, pattern).expect("build.rs's tables and tiktoken's patterns")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts of every kind the patterns treat differently: prose, code, numbers, mixed
    /// scripts, emoji, whitespace runs, contractions, and long runs of one character.
    fn samples() -> Vec<String> {
        let mut texts: Vec<String> = [
            include_str!("../../README.md"),
            include_str!("../../config.yaml"),
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
    fn patterns_are_tiktokens() {
        assert_eq!(O200K_PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
    }

    #[test]
    fn a_table_built_here_counts_with_its_own_ranks() {
        // Ranks 0-3 are single bytes, 4 is "ab", 5 is "abc": "abcab" is "abc" + "ab".
        let tokens: Vec<Vec<u8>> = ["a", "b", "c", " ", "ab", "abc"]
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let [bytes, starts, slots] = layout::encode(&tokens).expect("small table");
        let leak = |v: Vec<u8>| -> &'static [u8] { Vec::leak(v) };
        let bpe = CompactBpe::new([leak(bytes), leak(starts), leak(slots)], r"\S+|\s")
            .expect("well formed");
        assert_eq!(bpe.count("abcab"), 2);
        assert_eq!(bpe.count("abc ab cab"), 1 + 1 + 1 + 1 + 2);
        let malformed = CompactBpe::new([b"ab".as_slice(), &[0, 0, 0, 0], &[0; 12]], "x");
        assert!(malformed.is_err());
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
