//! Reed-Solomon coding of one segment's shards with `reed-solomon-simd`.
//!
//! The code is systematic: the `k` data shards are the sealed segment itself, so a healthy read
//! decodes nothing. Parity shards are only computed on write and only decoded when a data shard
//! is missing or bad: up to six lost data shards are solved for directly ([`direct`]), more by
//! the crate's decoder.

mod direct;

use std::sync::Mutex;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::error::CodecError;

/// Coders kept between calls and shared by every thread. A new coder's work buffers cost more
/// to set up than a segment's decode takes (measured: 2.3-5.6 ms for a first decode on a
/// thread against 1.6 ms), and the threads that code (tokio's blocking pool) come and go, so
/// coders kept per thread were set up again and again.
static ENCODERS: Mutex<Vec<ReedSolomonEncoder>> = Mutex::new(Vec::new());
static DECODERS: Mutex<Vec<ReedSolomonDecoder>> = Mutex::new(Vec::new());
/// Coders kept at most, of each kind: one per call in flight at once, as far as that goes.
const KEPT: usize = 16;

/// Takes a coder from `pool`, or has `new` make one.
fn take<T>(pool: &Mutex<Vec<T>>, new: impl FnOnce() -> Result<T, reed_solomon_simd::Error>) -> Result<T, CodecError> {
    let kept = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    match kept {
        Some(c) => Ok(c),
        None => new().map_err(rs_err),
    }
}

/// Gives `coder` back to `pool` for the next call.
fn give_back<T>(pool: &Mutex<Vec<T>>, coder: T) {
    let mut kept = pool.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() < KEPT {
        kept.push(coder);
    }
}

fn rs_err(e: reed_solomon_simd::Error) -> CodecError {
    CodecError::Parameters(e.to_string())
}

/// Computes the `n - k` parity shards of `k` data shards of `shard_len` bytes each, given as
/// one contiguous buffer of `k * shard_len` bytes.
pub fn encode_parity(k: usize, n: usize, shard_len: usize, data: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
    debug_assert_eq!(data.len(), k * shard_len);
    let mut enc = take(&ENCODERS, || ReedSolomonEncoder::new(k, n - k, shard_len))?;
    let parity = (|| {
        enc.reset(k, n - k, shard_len)?;
        for chunk in data.chunks_exact(shard_len) {
            enc.add_original_shard(chunk)?;
        }
        let result = enc.encode()?;
        Ok(result.recovery_iter().map(<[u8]>::to_vec).collect())
    })()
    .map_err(rs_err);
    give_back(&ENCODERS, enc);
    parity
}

/// Rebuilds the missing data shards from any `k` shards (`index < k` are data, the rest parity)
/// and writes all `k` data shards, in order, into `out` (`k * shard_len` bytes).
pub fn reconstruct_data(
    k: usize,
    n: usize,
    shard_len: usize,
    shards: &[(usize, &[u8])],
    out: &mut [u8],
) -> Result<(), CodecError> {
    if copy_data_at_hand(k, shard_len, shards, out) || direct::rebuild_lost_data(k, n, shard_len, shards, out) {
        return Ok(());
    }
    decode_by_library(k, n, shard_len, shards, out)
}

/// [`reconstruct_data`] with reed-solomon-simd's decoder alone, however few shards are lost:
/// what it falls back to, public so that the codec bench can set the two side by side.
pub fn reconstruct_data_by_library(
    k: usize,
    n: usize,
    shard_len: usize,
    shards: &[(usize, &[u8])],
    out: &mut [u8],
) -> Result<(), CodecError> {
    copy_data_at_hand(k, shard_len, shards, out);
    decode_by_library(k, n, shard_len, shards, out)
}

/// Copies the data shards in `shards` to their places in `out`; `true` if none is missing.
fn copy_data_at_hand(k: usize, shard_len: usize, shards: &[(usize, &[u8])], out: &mut [u8]) -> bool {
    debug_assert_eq!(out.len(), k * shard_len);
    let mut have = vec![false; k];
    for &(i, s) in shards.iter().filter(|(i, _)| *i < k) {
        out[i * shard_len..(i + 1) * shard_len].copy_from_slice(s);
        have[i] = true;
    }
    have.iter().all(|h| *h)
}

/// Writes the data shards missing from `shards` into `out` with the crate's decoder.
fn decode_by_library(k: usize, n: usize, shard_len: usize, shards: &[(usize, &[u8])], out: &mut [u8]) -> Result<(), CodecError> {
    let mut dec = take(&DECODERS, || ReedSolomonDecoder::new(k, n - k, shard_len))?;
    let decoded = (|| {
        dec.reset(k, n - k, shard_len)?;
        for &(i, s) in shards {
            if i < k {
                dec.add_original_shard(i, s)?;
            } else {
                dec.add_recovery_shard(i - k, s)?;
            }
        }
        let result = dec.decode()?;
        for (i, shard) in result.restored_original_iter() {
            out[i * shard_len..(i + 1) * shard_len].copy_from_slice(shard);
        }
        Ok(())
    })()
    .map_err(rs_err);
    give_back(&DECODERS, dec);
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coders are shared by every thread and reset per call: calls of different geometries,
    /// at once on several threads, each get their own answer.
    #[test]
    fn shared_coders_serve_any_geometry_on_any_thread() {
        let threads: Vec<_> = [(2usize, 3usize, 64usize), (4, 6, 1024), (3, 5, 130), (4, 6, 262_160)]
            .into_iter()
            .map(|(k, n, len)| {
                std::thread::spawn(move || {
                    for round in 0..20u8 {
                        let data: Vec<u8> = (0..k * len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(round)).collect();
                        let parity = encode_parity(k, n, len, &data).unwrap();
                        // Data shard 0 lost: rebuilt from the others and the first parity shard.
                        let mut have: Vec<(usize, &[u8])> = (1..k).map(|i| (i, &data[i * len..(i + 1) * len])).collect();
                        have.push((k, &parity[0]));
                        let mut out = vec![0u8; k * len];
                        reconstruct_data(k, n, len, &have, &mut out).unwrap();
                        assert!(out == data, "k {k} n {n} len {len} round {round}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
