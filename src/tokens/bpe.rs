//! A compact byte-pair counter for OpenAI's encodings: the same pre-tokenising pattern, the
//! same ranks and the same merge order as tiktoken, so its counts are tiktoken's exactly.
//!
//! tiktoken-rs keeps each table three times over on the heap (bytes → rank and rank → bytes
//! hash maps of one heap allocation per token, and a sorted copy): about 45 MB for
//! `o200k_base` and 23 MB for `cl100k_base`, built from base64 text at start. Here a table is
//! every token's bytes in one buffer, their offsets, and an open-addressing index of ranks
//! ([`super::layout`]): about 4 MB and 2 MB, written by `build.rs` from tiktoken-rs's own
//! tables (so nothing is copied into this repository and the two cannot drift apart; unit
//! tests compare the counts) and read where the binary holds them: nothing to build at run
//! time, and pages the kernel can drop and read back, not heap.

use std::collections::BinaryHeap;

use fancy_regex::Regex;

use super::layout::{self, word};

/// A piece from this many bytes is merged with a heap (`O(n log n)`) rather than by scanning
/// for the lowest rank after each merge (`O(n²)`, faster on the short pieces of real text).
const LONG_PIECE: usize = 128;

type Rank = u32;

/// One encoding's ranks and pre-tokenising pattern.
pub struct CompactBpe {
    /// Every token's bytes, in rank order.
    bytes: &'static [u8],
    /// Where token `r` starts in `bytes` (little-endian `u32`s); the next one is where it ends.
    starts: &'static [u8],
    /// The index: `rank + 1` (little-endian `u32`s) at the slot of a token's hash or a later
    /// one, 0 if empty; a power of two of them.
    slots: &'static [u8],
    /// `slots`' count less one.
    mask: usize,
    pattern: Regex,
}

impl CompactBpe {
    /// The table laid out as [`layout`] says, with `pattern` to split text.
    pub fn new(tables: [&'static [u8]; 3], pattern: &str) -> Result<Self, String> {
        let [bytes, starts, slots] = tables;
        let count = slots.len() / 4;
        let well_formed = slots.len() % 4 == 0
            && count.is_power_of_two()
            && starts.len() % 4 == 0
            && starts.len() >= 4
            && word(starts, starts.len() / 4 - 1) as usize == bytes.len();
        if !well_formed {
            return Err("malformed token table".into());
        }
        Ok(Self {
            bytes,
            starts,
            slots,
            mask: count - 1,
            pattern: Regex::new(pattern).map_err(|e| e.to_string())?,
        })
    }

    /// Tokens in `text` (no special tokens: their text counts as ordinary text, as
    /// tiktoken's `encode_ordinary`).
    pub fn count(&self, text: &str) -> usize {
        self.pattern
            .find_iter(text)
            .filter_map(Result::ok)
            .map(|piece| self.count_piece(piece.as_str().as_bytes()))
            .sum()
    }

    /// Bytes held by the tables (not the pattern's automaton).
    #[cfg(test)]
    pub fn table_bytes(&self) -> usize {
        self.bytes.len() + self.starts.len() + self.slots.len()
    }

    /// Tokens in the table.
    #[cfg(test)]
    pub fn tokens(&self) -> usize {
        self.starts.len() / 4 - 1
    }

    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return usize::from(!piece.is_empty());
        }
        if piece.len() < LONG_PIECE {
            self.merge_short(piece)
        } else {
            self.merge_long(piece)
        }
    }

    /// tiktoken's merge loop: merge the lowest-ranked adjacent pair (the leftmost of equal
    /// ranks) until no pair is a token; the parts left are the tokens.
    fn merge_short(&self, piece: &[u8]) -> usize {
        // (start, rank of the pair starting here), with two sentinels at the end.
        let mut parts: Vec<(usize, Rank)> = Vec::with_capacity(piece.len() + 1);
        for i in 0..piece.len() - 1 {
            parts.push((i, self.rank(&piece[i..i + 2]).unwrap_or(Rank::MAX)));
        }
        parts.push((piece.len() - 1, Rank::MAX));
        parts.push((piece.len(), Rank::MAX));
        let rank_at = |parts: &[(usize, Rank)], i: usize| {
            if i + 3 < parts.len() {
                self.rank(&piece[parts[i].0..parts[i + 3].0])
                    .unwrap_or(Rank::MAX)
            } else {
                Rank::MAX
            }
        };
        loop {
            let (mut min, mut at) = (Rank::MAX, 0);
            for (i, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
                if rank < min {
                    (min, at) = (rank, i);
                }
            }
            if min == Rank::MAX {
                break;
            }
            parts[at].1 = rank_at(&parts, at);
            if at > 0 {
                parts[at - 1].1 = rank_at(&parts, at - 1);
            }
            parts.remove(at + 1);
        }
        parts.len() - 1
    }

    /// The same merges in the same order, with a heap of candidate pairs and a linked list of
    /// parts, for pieces long enough that rescanning would be quadratic (a megabyte of one
    /// repeated character is one piece).
    fn merge_long(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        // Part starting at byte i: ends at end[i], previous part starts at prev[i].
        let mut end: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some(rank) = self.rank(&piece[i..i + 2]) {
                heap.push(std::cmp::Reverse((rank, i)));
            }
        }
        let mut parts = n;
        while let Some(std::cmp::Reverse((rank, start))) = heap.pop() {
            // Stale when a part it spans has merged since it was pushed.
            if !alive[start] || end[start] >= n {
                continue;
            }
            let right = end[start];
            let pair_end = end[right];
            if self.rank(&piece[start..pair_end]) != Some(rank) {
                continue;
            }
            alive[right] = false;
            end[start] = pair_end;
            if pair_end < n {
                prev[pair_end] = start;
            }
            parts -= 1;
            if pair_end < n
                && let Some(next) = self.rank(&piece[start..end[pair_end]])
            {
                heap.push(std::cmp::Reverse((next, start)));
            }
            let before = prev[start];
            if before != usize::MAX
                && let Some(next) = self.rank(&piece[before..pair_end])
            {
                heap.push(std::cmp::Reverse((next, before)));
            }
        }
        parts
    }

    fn rank(&self, token: &[u8]) -> Option<Rank> {
        let mut slot = layout::hash(token) & self.mask;
        loop {
            let entry = word(self.slots, slot);
            if entry == 0 {
                return None;
            }
            let rank = entry - 1;
            if self.token(rank) == token {
                return Some(rank);
            }
            slot = (slot + 1) & self.mask;
        }
    }

    fn token(&self, rank: Rank) -> &[u8] {
        let r = rank as usize;
        &self.bytes[word(self.starts, r) as usize..word(self.starts, r + 1) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::super::Encoding;

    #[test]
    fn both_merge_strategies_agree() {
        let pieces = [
            "internationalization".to_string(),
            "a".repeat(300),
            "abcabcabcabd".repeat(20),
            "ьъэюяабвгдеёжзийклмнопрстуфхцчшщ".repeat(5),
            "🎉👩‍💻".repeat(30),
            "=+=+=+=+=+=+=+=+===".repeat(10),
            " \t\n".repeat(50),
        ];
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let bpe = encoding.bpe();
            for piece in &pieces {
                for len in [2, 3, 7, 40, 127, 128, piece.len()] {
                    let bytes = &piece.as_bytes()[..len.min(piece.len())];
                    assert_eq!(
                        bpe.merge_short(bytes),
                        bpe.merge_long(bytes),
                        "{} on {bytes:?}",
                        encoding.name()
                    );
                }
            }
        }
    }
}
