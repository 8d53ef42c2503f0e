//! Deterministic, incompressible-looking bytes for the demo, tests and benchmarks, so that
//! they all exercise the store with the same kind of data.

/// `len` pseudo-random bytes determined by `seed` (xorshift64; not for anything secret).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
