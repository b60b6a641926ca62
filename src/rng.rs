//! The process-wide seeded random generator. candle's CPU generator cannot be seeded (candle
//! issues #2651, #3297), so initialisation, shuffling and dropout all draw from this one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Mutex, MutexGuard, OnceLock};

fn global() -> &'static Mutex<ChaCha8Rng> {
    static RNG: OnceLock<Mutex<ChaCha8Rng>> = OnceLock::new();
    RNG.get_or_init(|| Mutex::new(ChaCha8Rng::from_os_rng()))
}

/// `keras.utils.set_random_seed`: everything drawn afterwards is the same run to run.
pub fn set_seed(seed: u64) {
    *lock() = ChaCha8Rng::seed_from_u64(seed);
}

/// The global generator; a poisoned lock is still a valid generator, so it is recovered.
pub fn lock() -> MutexGuard<'static, ChaCha8Rng> {
    global().lock().unwrap_or_else(|e| e.into_inner())
}

/// Fisher-Yates permutation of `0..n` (the per-epoch shuffle).
pub fn permutation(n: usize) -> Vec<usize> {
    permutation_with(&mut lock(), n)
}

/// A generator of its own, seeded from the global one: each Dropout layer and each model's shuffle
/// owns one, so what one model draws never changes what another draws (Keras 3's SeedGenerator).
pub fn fork() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(lock().random())
}

/// Fisher-Yates permutation of `0..n` drawn from `rng`.
pub fn permutation_with(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        idx.swap(i, j);
    }
    idx
}
