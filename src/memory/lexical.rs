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
        let mut counts: std::collections::HashMap<(u64, bool), f32> =
            std::collections::HashMap::new();
        for word in words(text) {
            *counts
                .entry((fnv1a(b"w", word.as_bytes()), false))
                .or_default() += 1.0;
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for gram in padded.windows(3) {
                let gram: String = gram.iter().collect();
                *counts
                    .entry((fnv1a(b"t", gram.as_bytes()), true))
                    .or_default() += 1.0;
            }
        }
        if counts.is_empty() {
            return None;
        }
        let mut vector = vec![0.0_f32; self.dimensions];
        for ((hash, trigram), count) in counts {
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

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn fnv1a(kind: &[u8], bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.iter().chain(bytes) {
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

    #[test]
    fn a_text_without_words_has_no_vector() {
        assert!(LexicalEmbedder::new(16).embed(" !? … ").is_none());
        assert_eq!(LexicalEmbedder::new(16).embed("ok").expect("v").len(), 16);
    }
}
