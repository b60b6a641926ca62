//! The random generators' state as JSON, so that a resumed `fit` shuffles and drops out exactly as
//! the uninterrupted run would: a ChaCha8 generator is its seed, stream and position.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn rng_to_json(r: &ChaCha8Rng) -> Value {
    json!({"algorithm": "chacha8", "seed": hex(&r.get_seed()), "stream": r.get_stream().to_string(),
           "word_pos": r.get_word_pos().to_string()})
}

/// `None` for anything that is not what `rng_to_json` writes.
pub fn rng_from_json(v: &Value) -> Option<ChaCha8Rng> {
    if v["algorithm"].as_str()? != "chacha8" {
        return None;
    }
    let s = v["seed"].as_str()?;
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    let mut r = ChaCha8Rng::from_seed(seed);
    r.set_stream(v["stream"].as_str()?.parse().ok()?);
    r.set_word_pos(v["word_pos"].as_str()?.parse().ok()?);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_restored_generator_continues_the_same_sequence() {
        let mut a = ChaCha8Rng::seed_from_u64(42);
        a.set_stream(3);
        let _: [u64; 5] = a.random();
        let _: u32 = a.random(); // an odd position inside a block
        let mut b = rng_from_json(&rng_to_json(&a)).unwrap();
        let xa: Vec<u64> = (0..100).map(|_| a.random()).collect();
        let xb: Vec<u64> = (0..100).map(|_| b.random()).collect();
        assert_eq!(xa, xb);
    }

    #[test]
    fn malformed_state_is_refused() {
        assert!(rng_from_json(&json!({"algorithm": "pcg"})).is_none());
        assert!(rng_from_json(&json!({"algorithm": "chacha8", "seed": "zz", "stream": "0", "word_pos": "0"})).is_none());
    }
}
