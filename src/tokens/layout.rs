//! How a token table is laid out, shared by `build.rs` (which writes the tables of tiktoken's
//! encodings into the build's output directory) and [`super::bpe`] (which reads them where the
//! binary holds them, without copying them to the heap).
//!
//! A table is three byte strings:
//! - `bytes`: every token's bytes, in rank order;
//! - `starts`: little-endian `u32`s, where token `r` starts in `bytes` (`starts[r + 1]` is
//!   where it ends), one more than there are tokens;
//! - `slots`: little-endian `u32`s, an open-addressing index (linear probing, a power of two of
//!   them, at most half full): `rank + 1` at the slot of the token's [`hash`] or a later one,
//!   0 for an empty slot.

/// FNV-1a: tokens are short, and the table is built from trusted data.
pub fn hash(bytes: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Fold the high bits in: the mask keeps only the low ones.
    #[allow(clippy::cast_possible_truncation)]
    let folded = (h ^ (h >> 32)) as usize;
    folded
}

/// The `u32` at index `i` of a little-endian array.
#[inline]
pub fn word(array: &[u8], i: usize) -> u32 {
    let at = 4 * i;
    u32::from_le_bytes([array[at], array[at + 1], array[at + 2], array[at + 3]])
}

/// The three byte strings of the table of `tokens` (token `r` is `tokens[r]`; an empty token
/// is left out of the index).
#[allow(dead_code)] // build.rs and the tests build tables; the server only reads them
pub fn encode(tokens: &[Vec<u8>]) -> Result<[Vec<u8>; 3], String> {
    let too_big = |_| "token table too large".to_string();
    let mut bytes = Vec::with_capacity(tokens.iter().map(Vec::len).sum());
    let mut starts = Vec::with_capacity(4 * (tokens.len() + 1));
    for token in tokens {
        starts.extend(u32::try_from(bytes.len()).map_err(too_big)?.to_le_bytes());
        bytes.extend_from_slice(token);
    }
    starts.extend(u32::try_from(bytes.len()).map_err(too_big)?.to_le_bytes());
    let capacity = (tokens.len() * 2).next_power_of_two().max(2);
    let mut slots = vec![0u32; capacity];
    for (rank, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            continue;
        }
        let mut slot = hash(token) & (capacity - 1);
        while slots[slot] != 0 {
            slot = (slot + 1) & (capacity - 1);
        }
        slots[slot] = u32::try_from(rank + 1).map_err(too_big)?;
    }
    let slots = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
    Ok([bytes, starts, slots])
}
