//! The built-in embedder: **lexical** feature hashing, not a neural model. It needs no network,
//! no key and no model file, so memory works on a fresh laptop; but it matches texts that share
//! words (and word pieces), it does not understand meaning: "car" does not find "automobile".
//! For semantic search configure a provider's embedding model (`memory.embedder`).
//!
//! Features: each lowercased word, and the character trigrams of each word (so "meeting" and
//! "meetings" overlap), hashed (FNV-1a) into `dimensions` buckets with a hashed sign,
//! weighted by `1 + ln(count)`, and the vector L2-normalised, so cosine similarity is the
//! overlap of the two texts' features.

/// Weight of a trigram relative to a whole word.
const TRIGRAM_WEIGHT: f32 = 0.35;

#[derive(Debug, Clone, Copy)]
pub struct LexicalEmbedder {
    dimensions: usize,
}

impl LexicalEmbedder {
    pub fn new(dimensions: u32) -> Self {
        Self {
            dimensions: dimensions as usize,
        }
    }

    /// The vector of `text`; `None` when it has no word at all (a zero vector has no
    /// direction).
    pub fn embed(&self, text: &str) -> Option<Vec<f32>> {
        let features = features(text);
        if features.is_empty() {
            return None;
        }
        let mut vector = vec![0.0_f32; self.dimensions];
        for run in features.chunk_by(|a, b| a == b) {
            let (hash, trigram) = run[0];
            #[allow(clippy::cast_precision_loss)] // a count of features in one text
            let count = run.len() as f32;
            let weight = (1.0 + count.ln()) * if trigram { TRIGRAM_WEIGHT } else { 1.0 };
            // The bucket from the low bits, the sign from the top bit.
            let bucket = usize::try_from(hash % self.dimensions as u64).unwrap_or(0);
            let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
            vector[bucket] += sign * weight;
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            return None;
        }
        for x in &mut vector {
            *x /= norm;
        }
        Some(vector)
    }
}

/// Every feature of `text` (hash, is it a trigram), sorted so that equal features are
/// neighbours. Built without an allocation per word: this runs for every message indexed.
fn features(text: &str) -> Vec<(u64, bool)> {
    let mut features = Vec::with_capacity(text.len());
    let mut lowered = String::new();
    let mut padded: Vec<char> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word = lowercase(word, &mut lowered);
        features.push((fnv1a(&[b"w", word.as_bytes()]), false));
        padded.clear();
        padded.push(' ');
        padded.extend(word.chars());
        padded.push(' ');
        for gram in padded.windows(3) {
            let mut bytes = [0_u8; 12];
            let mut len = 0;
            for c in gram {
                len += c.encode_utf8(&mut bytes[len..]).len();
            }
            features.push((fnv1a(&[b"t", &bytes[..len]]), true));
        }
    }
    features.sort_unstable();
    features
}

/// `word` in lower case: ASCII in place in `buffer`, anything else by `str::to_lowercase`
/// (which knows the context rules, such as a word-final sigma).
fn lowercase<'a>(word: &'a str, buffer: &'a mut String) -> std::borrow::Cow<'a, str> {
    if word.is_ascii() {
        buffer.clear();
        buffer.push_str(word);
        buffer.make_ascii_lowercase();
        std::borrow::Cow::Borrowed(buffer.as_str())
    } else {
        std::borrow::Cow::Owned(word.to_lowercase())
    }
}

/// FNV-1a over the concatenation of `parts`.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn texts_sharing_words_are_closer_than_texts_that_do_not() {
        let e = LexicalEmbedder::new(384);
        let v = |t: &str| e.embed(t).expect("words");
        let query = v("when is the team meeting");
        let near = v("The team meeting moved to Thursday");
        let far = v("my cat likes tuna");
        assert!(cosine(&query, &near) > cosine(&query, &far) + 0.2);
        // Word pieces: a plural still overlaps.
        assert!(cosine(&v("meetings"), &v("meeting")) > cosine(&v("meetings"), &v("tuna")));
        // Normalised, deterministic, case-insensitive.
        let again = v("The TEAM meeting moved to thursday");
        assert!((cosine(&near, &again) - 1.0).abs() < 1e-5);
        assert!((cosine(&near, &near) - 1.0).abs() < 1e-5);
    }

    /// The features as the first version built them: a `String` per word and per trigram.
    fn features_by_strings(text: &str) -> Vec<(u64, bool)> {
        let mut features = Vec::new();
        let words = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase);
        for word in words {
            features.push((fnv1a(&[b"w", word.as_bytes()]), false));
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for gram in padded.windows(3) {
                let gram: String = gram.iter().collect();
                features.push((fnv1a(&[b"t", gram.as_bytes()]), true));
            }
        }
        features.sort_unstable();
        features
    }

    #[test]
    fn features_are_those_the_string_built_version_gave() {
        for text in [
            "The team MEETING moved to Thursday, 10:30!",
            "ΟΔΥΣΣΕΥΣ and Straße, naïve café; 東京 x",
            "a",
            "",
        ] {
            assert_eq!(features(text), features_by_strings(text), "{text}");
        }
        // FNV-1a 64 of "a", split across parts or not.
        assert_eq!(fnv1a(&[b"", b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"ab"]), fnv1a(&[b"a", b"b"]));
    }

    #[test]
    fn a_text_without_words_has_no_vector() {
        assert!(LexicalEmbedder::new(16).embed(" !? … ").is_none());
        assert_eq!(LexicalEmbedder::new(16).embed("ok").expect("v").len(), 16);
    }
}
