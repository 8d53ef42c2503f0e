//! One segment through the whole codec: seal, split, encode, check; and back.

use bytes::Bytes;

use crate::check::ShardCheck;
use crate::erasure;
use crate::error::CodecError;
use crate::keys::DataKey;
use crate::layout::Layout;
use crate::manifest::VersionId;
use crate::seal;

/// Everything needed to code the segments of one object version.
#[derive(Clone)]
pub struct SegmentCodec {
    layout: Layout,
    key: DataKey,
    vid: VersionId,
    check_seed: u64,
}

/// One segment, coded: shard `i` goes to placement `i`.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    /// `n` shards; the first `k` are slices of the sealed segment itself.
    pub shards: Vec<Bytes>,
    /// The check of each shard, for the manifest.
    pub checks: Vec<ShardCheck>,
}

/// One segment, decoded.
#[derive(Debug, Clone)]
pub struct DecodedSegment {
    /// The segment's plaintext, shareable without a copy on its way to the output.
    pub plaintext: Bytes,
    /// Whether parity had to be decoded (a data shard was missing or bad).
    pub reconstructed: bool,
    /// A shard that passed its check yet made authentication fail, found by leaving shards out
    /// one at a time. It is wrong and must be attributed to its provider.
    pub liar: Option<usize>,
}

impl SegmentCodec {
    /// A codec for version `vid` with geometry `layout`.
    pub fn new(layout: Layout, key: DataKey, vid: VersionId, check_seed: u64) -> Self {
        SegmentCodec { layout, key, vid, check_seed }
    }

    /// The geometry this codec works on.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn is_last(&self, s: u64) -> bool {
        s + 1 == self.layout.segment_count()
    }

    /// Seals, splits and encodes segment `s` of a known-size object; `plaintext` must be
    /// exactly `layout.segment_plain_len(s)` bytes.
    pub fn encode(&self, s: u64, plaintext: &[u8]) -> Result<EncodedSegment, CodecError> {
        if plaintext.len() != self.layout.segment_plain_len(s) {
            return Err(CodecError::Parameters(format!(
                "segment {s} has {} bytes, layout says {}",
                plaintext.len(),
                self.layout.segment_plain_len(s)
            )));
        }
        self.encode_streaming(s, plaintext, self.is_last(s))
    }

    /// Seals, splits and encodes segment `s` of a stream whose total size is not known yet
    /// (`layout.size` is ignored). Every segment but the last must be a full segment; the
    /// caller knows `is_last` by reading one segment ahead.
    pub fn encode_streaming(&self, s: u64, plaintext: &[u8], is_last: bool) -> Result<EncodedSegment, CodecError> {
        let mut buf = Vec::with_capacity(self.buffer_capacity());
        buf.extend_from_slice(plaintext);
        self.encode_owned(s, buf, is_last)
    }

    /// Capacity of a segment buffer that [`Self::encode_owned`] can seal and split in place.
    pub fn buffer_capacity(&self) -> usize {
        self.layout.k as usize * self.layout.full_shard_len()
    }

    /// Like [`Self::encode_streaming`], but seals the plaintext in `buf` in place: reading the
    /// source straight into a buffer of [`Self::buffer_capacity`] saves a copy and an
    /// allocation per segment.
    pub fn encode_owned(&self, s: u64, mut buf: Vec<u8>, is_last: bool) -> Result<EncodedSegment, CodecError> {
        let l = &self.layout;
        let full = l.segment_size as usize;
        let plain_len = buf.len();
        if plain_len > full || (!is_last && plain_len != full) {
            return Err(CodecError::Parameters(format!("segment {s} has {plain_len} bytes, segment size is {full}")));
        }
        let (k, n, shard_len) = (l.k as usize, l.n as usize, l.shard_len_for(plain_len));
        buf.resize(k * shard_len, 0);
        seal::seal_segment_in_place(&self.key, &self.vid, s, is_last, &mut buf, plain_len);
        // Check each data shard while it is still warm in cache from sealing.
        let mut checks: Vec<ShardCheck> = buf.chunks_exact(shard_len).map(|sh| ShardCheck::of(self.check_seed, sh)).collect();
        let parity = erasure::encode_parity(k, n, shard_len, &buf)?;
        checks.extend(parity.iter().map(|sh| ShardCheck::of(self.check_seed, sh)));
        let data = Bytes::from(buf);
        let mut shards: Vec<Bytes> = (0..k).map(|i| data.slice(i * shard_len..(i + 1) * shard_len)).collect();
        shards.extend(parity.into_iter().map(Bytes::from));
        Ok(EncodedSegment { shards, checks })
    }

    /// Indices of the given shards that are present but fail their check (or have the wrong
    /// length). `shards[i]` is shard `i` or `None` when it could not be fetched.
    pub fn bad_shards(&self, s: u64, shards: &[Option<Bytes>], checks: &[ShardCheck]) -> Vec<usize> {
        shards
            .iter()
            .enumerate()
            .filter_map(|(i, sh)| sh.as_ref().map(|sh| (i, sh)))
            .filter(|(i, sh)| !self.shard_is_good(s, sh, &checks[*i]))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether `shard` is a whole shard of segment `s` matching `check` (one shard at a time,
    /// as answers arrive).
    pub fn shard_is_good(&self, s: u64, shard: &[u8], check: &ShardCheck) -> bool {
        shard.len() == self.layout.shard_len(s) && check.verifies(self.check_seed, shard)
    }

    /// Decodes segment `s` from shards already known to pass their checks (see
    /// [`Self::bad_shards`]); `None` marks a shard that is missing or bad. Uses data shards when
    /// all are present, parity otherwise; if authentication still fails and spare shards exist,
    /// it retries leaving each shard out in turn to find a lying one.
    pub fn decode(&self, s: u64, shards: &[Option<Bytes>]) -> Result<DecodedSegment, CodecError> {
        let k = self.layout.k as usize;
        let good: Vec<usize> = (0..shards.len()).filter(|i| shards[*i].is_some()).collect();
        if good.len() < k {
            return Err(CodecError::NotEnoughShards { segment: s, good: good.len(), needed: k });
        }
        // Prefer data shards: `good` is sorted, so the first k are the cheapest set to decode.
        match self.decode_with(s, shards, &good[..k]) {
            Ok(d) => Ok(d),
            Err(e @ CodecError::SegmentAuth { .. }) if good.len() > k => {
                for &suspect in &good[..k] {
                    let rest: Vec<usize> = good.iter().copied().filter(|i| *i != suspect).take(k).collect();
                    if let Ok(mut d) = self.decode_with(s, shards, &rest) {
                        d.liar = Some(suspect);
                        return Ok(d);
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Rebuilds shards `want` of segment `s` from shards that passed their checks, without
    /// decrypting: repair needs no data key. Reconstructs the data shards, recomputes parity
    /// only if some is wanted, and returns the rebuilt shards only if each matches its check in
    /// `checks` (the manifest's); if not and spare shards exist, leaves each input out in turn.
    pub fn rebuild(
        &self,
        s: u64,
        shards: &[Option<Bytes>],
        checks: &[ShardCheck],
        want: &[usize],
    ) -> Result<Vec<Bytes>, CodecError> {
        let k = self.layout.k as usize;
        let good: Vec<usize> = (0..shards.len()).filter(|i| shards[*i].is_some()).collect();
        if good.len() < k {
            return Err(CodecError::NotEnoughShards { segment: s, good: good.len(), needed: k });
        }
        let mut attempts: Vec<Vec<usize>> = vec![good[..k].to_vec()];
        if good.len() > k {
            attempts.extend(good[..k].iter().map(|&out| good.iter().copied().filter(|i| *i != out).take(k).collect()));
        }
        for use_idx in attempts {
            let rebuilt = self.rebuild_with(s, shards, &use_idx, want)?;
            if rebuilt.iter().zip(want).all(|(sh, &i)| checks[i].verifies(self.check_seed, sh)) {
                return Ok(rebuilt);
            }
        }
        Err(CodecError::RebuildMismatch { segment: s })
    }

    fn rebuild_with(
        &self,
        s: u64,
        shards: &[Option<Bytes>],
        use_idx: &[usize],
        want: &[usize],
    ) -> Result<Vec<Bytes>, CodecError> {
        let l = &self.layout;
        let (k, n, shard_len) = (l.k as usize, l.n as usize, l.shard_len(s));
        let chosen: Vec<(usize, &[u8])> =
            use_idx.iter().map(|&i| (i, shards[i].as_deref().expect("chosen shards are present"))).collect();
        let mut data = vec![0u8; k * shard_len];
        erasure::reconstruct_data(k, n, shard_len, &chosen, &mut data)?;
        let parity = if want.iter().any(|&i| i >= k) { erasure::encode_parity(k, n, shard_len, &data)? } else { Vec::new() };
        let data = Bytes::from(data);
        Ok(want
            .iter()
            .map(|&i| if i < k { data.slice(i * shard_len..(i + 1) * shard_len) } else { Bytes::from(parity[i - k].clone()) })
            .collect())
    }

    fn decode_with(&self, s: u64, shards: &[Option<Bytes>], use_idx: &[usize]) -> Result<DecodedSegment, CodecError> {
        let l = &self.layout;
        let (k, n, shard_len) = (l.k as usize, l.n as usize, l.shard_len(s));
        let chosen: Vec<(usize, &[u8])> =
            use_idx.iter().map(|&i| (i, shards[i].as_deref().expect("chosen shards are present"))).collect();
        let reconstructed = use_idx.iter().any(|&i| i >= k);
        let mut buf = vec![0u8; k * shard_len];
        erasure::reconstruct_data(k, n, shard_len, &chosen, &mut buf)?;
        let sealed_len = l.segment_sealed_len(s);
        let plain_len = seal::open_segment_in_place(&self.key, &self.vid, s, self.is_last(s), &mut buf[..sealed_len])?;
        buf.truncate(plain_len);
        Ok(DecodedSegment { plaintext: Bytes::from(buf), reconstructed, liar: None })
    }
}
