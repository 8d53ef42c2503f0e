//! Reed-Solomon coding of one segment's shards with `reed-solomon-simd`.
//!
//! The code is systematic: the `k` data shards are the sealed segment itself, so a healthy read
//! decodes nothing. Parity shards are only computed on write and only decoded when a data shard
//! is missing or bad.

use std::cell::RefCell;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::CodecError;

thread_local! {
    static ENCODER: RefCell<Option<ReedSolomonEncoder>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

fn rs_err(e: reed_solomon_simd::Error) -> CodecError {
    CodecError::Parameters(e.to_string())
}

/// Computes the `n - k` parity shards of `k` data shards of `shard_len` bytes each, given as
/// one contiguous buffer of `k * shard_len` bytes.
pub fn encode_parity(k: usize, n: usize, shard_len: usize, data: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
    debug_assert_eq!(data.len(), k * shard_len);
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let enc = match slot.as_mut() {
            Some(enc) => {
                enc.reset(k, n - k, shard_len).map_err(rs_err)?;
                enc
            }
            None => slot.insert(ReedSolomonEncoder::new(k, n - k, shard_len).map_err(rs_err)?),
        };
        for chunk in data.chunks_exact(shard_len) {
            enc.add_original_shard(chunk).map_err(rs_err)?;
        }
        let result = enc.encode().map_err(rs_err)?;
        Ok(result.recovery_iter().map(<[u8]>::to_vec).collect())
    })
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
    debug_assert_eq!(out.len(), k * shard_len);
    let mut have = vec![false; k];
    for &(i, s) in shards.iter().filter(|(i, _)| *i < k) {
        out[i * shard_len..(i + 1) * shard_len].copy_from_slice(s);
        have[i] = true;
    }
    if have.iter().all(|h| *h) {
        return Ok(());
    }
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dec = match slot.as_mut() {
            Some(dec) => {
                dec.reset(k, n - k, shard_len).map_err(rs_err)?;
                dec
            }
            None => slot.insert(ReedSolomonDecoder::new(k, n - k, shard_len).map_err(rs_err)?),
        };
        for &(i, s) in shards {
            if i < k {
                dec.add_original_shard(i, s).map_err(rs_err)?;
            } else {
                dec.add_recovery_shard(i - k, s).map_err(rs_err)?;
            }
        }
        let result = dec.decode().map_err(rs_err)?;
        for (i, shard) in result.restored_original_iter() {
            out[i * shard_len..(i + 1) * shard_len].copy_from_slice(shard);
        }
        Ok(())
    })
}
