//! The chunk codec: one series' samples in one time window, compressed into one byte string.
//!
//! PLACEHOLDER (16 bytes a sample, uncompressed); the real codec replaces the bodies, keeping
//! the signatures.

/// Why a chunk could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The bytes end before the chunk does, or carry an unknown format.
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
}

/// Encodes samples. `samples` must be sorted by time, strictly ascending (the caller
/// guarantees it); values are kept bit for bit (NaN payloads, -0.0, infinities).
#[must_use]
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 16);
    for (ts, v) in samples {
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    out
}

/// Decodes what [`encode`] wrote.
///
/// # Errors
/// [`ChunkError::Corrupt`] if the bytes are not a chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    if bytes.len() % 16 != 0 {
        return Err(ChunkError::Corrupt("length is not a whole number of samples"));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| {
            let mut t = [0; 8];
            let mut v = [0; 8];
            t.copy_from_slice(&c[..8]);
            v.copy_from_slice(&c[8..]);
            (i64::from_le_bytes(t), f64::from_bits(u64::from_le_bytes(v)))
        })
        .collect())
}
