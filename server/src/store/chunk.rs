//! The chunk codec: one series' samples in one time window, compressed into one byte string.
//!
//! Pure (no IO, no clock) and lossless: timestamps are kept exactly, values bit for bit (NaN
//! payloads, -0.0, infinities, denormals). [`decode`] never panics: bytes that are not a
//! chunk are a [`ChunkError`].
//!
//! # Format (version 1)
//!
//! ```text
//! byte     0x01                          format version
//! varint   n                             number of samples (LEB128), <= MAX_SAMPLES
//! -- nothing more when n = 0 --
//! varint   zigzag(t0)                    first timestamp
//! varint   zigzag(t1 - t0)               when n >= 2
//! bits     residuals(t[i] - 2 t[i-1] + t[i-2], i = 2..n)   when n >= 3
//! bits     2-bit value mode, then the values (below)
//! bits     zero padding to the byte
//! ```
//!
//! All arithmetic on timestamps and integers wraps (two's complement), so every i64 sequence
//! round-trips. The bit stream is written most significant bit first.
//!
//! **residuals(r)**: `long(g)` with `g` the greatest common divisor of the `|r|`; `g = 0`
//! means every residual is 0 and ends the block. Otherwise the code: one bit for its kind
//! and a 6-bit parameter `k`, then each `zigzag(r / g)` in that code. Kind 0 is Rice: the
//! quotient `z >> k` in unary (ones, then a zero) and the low `k` bits, a quotient of 16 or
//! more being 16 one bits followed by `long(z)`. Kind 1 is Exp-Golomb: `q = z >> k` as the
//! Elias gamma code of `q + 1` (bit length - 1 zero bits, then its bits) and the low `k`
//! bits. `long(z)` is the bit length of `z` in 7 bits and then that many bits. The encoder
//! picks the kind and `k` that give the fewest bits.
//!
//! **Value modes**:
//! - `0` XOR (Gorilla): the first value's 64 bits; then per value `x = bits ^ previous bits`:
//!   `0` if `x = 0`; `10` and the meaningful bits if they fit the previous window of leading
//!   and trailing zeros; else `11`, leading zeros (6 bits), meaningful length - 1 (6 bits) and
//!   the meaningful bits.
//! - `1`, `2`, `3` decimal: every value is `m / 10^s` (bit for bit, `m` an integer with
//!   `|m| <= 2^53`, the same `s` for the chunk). A 4-bit scale `s`, then the integers `m`:
//!   mode `1` as residuals of `m` itself; mode `2` `long(zigzag(m0))` and residuals of the
//!   deltas; mode `3` `long(zigzag(m0))`, `long(zigzag(m1 - m0))` and residuals of the
//!   deltas of deltas. Finite values written with few decimals (what the agent sends after
//!   rounding at the source, see `docs/metrics-precision.md`) take this path.
//!
//! The encoder writes every mode the values allow and keeps the shortest.

mod bits;
#[cfg(test)]
mod tests;

use bits::{BitReader, BitWriter, Code, Fields, put_varint, take_varint, unzigzag, zigzag};

/// Why a chunk could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The bytes end before the chunk does, or carry an unknown format.
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
}

/// The format version in the first byte.
const FORMAT_V1: u8 = 1;
/// Value modes (2 bits).
const MODE_XOR: u64 = 0;
const MODE_RAW: u64 = 1;
const MODE_DELTA: u64 = 2;
const MODE_DOD: u64 = 3;
/// Width of the decimal scale field, and the largest scale.
const SCALE_BITS: u32 = 4;
const MAX_SCALE: usize = 15;
/// `10^s` for every scale; all exact in f64.
const POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
/// Most samples [`decode`] accepts in one chunk: more than an hour holds at one sample per
/// millisecond (3.6 M), so every one-hour window of strictly ascending timestamps fits.
/// It bounds what a corrupt count can make [`decode`] allocate.
pub const MAX_SAMPLES: usize = 1 << 22;
/// Largest magnitude of a decimal mantissa: integers up to here are exact in f64.
const MAX_MANTISSA: i64 = 1 << 53;

/// Encodes samples. `samples` must be sorted by time, strictly ascending (the caller
/// guarantees it); values are kept bit for bit (NaN payloads, -0.0, infinities).
#[must_use]
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    put_varint(&mut out, samples.len() as u64);
    let Some(&(t0, _)) = samples.first() else {
        return out;
    };
    put_varint(&mut out, zigzag(t0));
    if let Some(&(t1, _)) = samples.get(1) {
        put_varint(&mut out, zigzag(t1.wrapping_sub(t0)));
    }
    let mut w = BitWriter::new(out);
    if samples.len() >= 3 {
        let dods: Vec<i64> = samples
            .windows(3)
            .map(|s| dod(s[0].0, s[1].0, s[2].0))
            .collect();
        w.fields(&residuals(&dods));
    }
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    w.fields(&value_fields(&values));
    w.finish()
}

/// The shortest value block (mode field included) of `values`.
fn value_fields(values: &[f64]) -> Fields {
    let xor = xor_fields(values);
    match decimal(values).map(|(scale, m)| decimal_fields(scale, &m)) {
        Some(d) if d.len() < xor.len() => d,
        _ => xor,
    }
}

/// Encodes values alone, as a chunk's value block (the 2-bit mode and the values, see the
/// module docs) padded with zero bits to the byte: for columns of numbers that are not
/// samples (the packed minute tier, `store/pack.rs`). Bit for bit like [`encode`]; nothing
/// for no values. The count is not stored: the caller knows it.
#[must_use]
pub fn encode_values(values: &[f64]) -> Vec<u8> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut w = BitWriter::new(Vec::new());
    w.fields(&value_fields(values));
    w.finish()
}

/// Decodes `n` values that [`encode_values`] wrote at the start of `bytes`; returns them
/// and the bytes they took (the rest may hold something else).
///
/// # Errors
/// [`ChunkError::Corrupt`] if the bytes do not start with `n` encoded values.
pub fn decode_values(bytes: &[u8], n: usize) -> Result<(Vec<f64>, usize), ChunkError> {
    if n == 0 {
        return Ok((Vec::new(), 0));
    }
    if n > MAX_SAMPLES {
        return Err(ChunkError::Corrupt("value count larger than a chunk holds"));
    }
    let mut r = BitReader::new(bytes);
    let values = match r.bits(2)? {
        MODE_XOR => read_xor(&mut r, n)?,
        mode => read_decimal(&mut r, mode, n)?,
    };
    let pad = r.remaining() % 8;
    if r.bits(pad as u32)? != 0 {
        return Err(ChunkError::Corrupt("nonzero padding"));
    }
    Ok((values, bytes.len() - r.remaining() / 8))
}

/// Decodes what [`encode`] wrote.
///
/// # Errors
/// [`ChunkError::Corrupt`] if the bytes are not a chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let Some((&version, mut rest)) = bytes.split_first() else {
        return Err(ChunkError::Corrupt("empty chunk"));
    };
    if version != FORMAT_V1 {
        return Err(ChunkError::Corrupt("unknown chunk format version"));
    }
    let n = take_varint(&mut rest)?;
    if n == 0 {
        return if rest.is_empty() {
            Ok(Vec::new())
        } else {
            Err(ChunkError::Corrupt("bytes after an empty chunk"))
        };
    }
    // A run of zero residuals takes no bits, so the count is bounded by a constant instead
    // of by the length; this bounds the allocation.
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_SAMPLES)
        .ok_or(ChunkError::Corrupt(
            "sample count larger than a chunk holds",
        ))?;
    let t0 = unzigzag(take_varint(&mut rest)?);
    let mut ts = Vec::with_capacity(n);
    ts.push(t0);
    if n >= 2 {
        let d1 = unzigzag(take_varint(&mut rest)?);
        ts.push(t0.wrapping_add(d1));
    }
    let mut r = BitReader::new(rest);
    if n >= 3 {
        let dods = read_residuals(&mut r, n - 2)?;
        for d in dods {
            let (a, b) = (ts[ts.len() - 2], ts[ts.len() - 1]);
            ts.push(b.wrapping_add(b.wrapping_sub(a)).wrapping_add(d));
        }
    }
    let values = match r.bits(2)? {
        MODE_XOR => read_xor(&mut r, n)?,
        mode => read_decimal(&mut r, mode, n)?,
    };
    r.finish()?;
    Ok(ts.into_iter().zip(values).collect())
}

/// The delta of deltas of three consecutive timestamps or integers, wrapping.
fn dod(a: i64, b: i64, c: i64) -> i64 {
    c.wrapping_sub(b).wrapping_sub(b.wrapping_sub(a))
}

/// Greatest common divisor of magnitudes.
const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The residual block of `rs` (see the module docs).
fn residuals(rs: &[i64]) -> Fields {
    let g = rs.iter().fold(0, |g, r| gcd(g, r.unsigned_abs()));
    let divisor = i128::from(g.max(1));
    // The quotient of an i64 by a divisor of its magnitude is an i64.
    let zs: Vec<u64> = rs
        .iter()
        .map(|&r| zigzag((i128::from(r) / divisor) as i64))
        .collect();
    let mut f = Fields::default();
    f.long(g);
    if g == 0 {
        // Every residual is zero: nothing more to say.
        return f;
    }
    let code = Code::best(&zs);
    code.write_header(&mut f);
    for z in zs {
        code.write(&mut f, z);
    }
    f
}

fn read_residuals(r: &mut BitReader<'_>, count: usize) -> Result<Vec<i64>, ChunkError> {
    let g = r.long()?;
    if g == 0 {
        return Ok(vec![0; count]);
    }
    // Two's complement: the wrapping product is the original residual.
    let g = g as i64;
    let code = Code::read_header(r)?;
    let mut out = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        out.push(unzigzag(code.read(r)?).wrapping_mul(g));
    }
    Ok(out)
}

/// If every value is a decimal with a common scale, the smallest such scale and the integers.
fn decimal(values: &[f64]) -> Option<(usize, Vec<i64>)> {
    (0..=MAX_SCALE).find_map(|s| {
        values
            .iter()
            .map(|&v| to_mantissa(v, s))
            .collect::<Option<Vec<i64>>>()
            .map(|m| (s, m))
    })
}

/// `m` with `m / 10^s` equal to `v` bit for bit, if there is one in range.
fn to_mantissa(v: f64, s: usize) -> Option<i64> {
    let p = POW10[s];
    let m = (v * p).round();
    if !m.is_finite() || m.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    // In range, so the conversion is exact.
    let m = m as i64;
    (from_mantissa(m, s).to_bits() == v.to_bits()).then_some(m)
}

fn from_mantissa(m: i64, s: usize) -> f64 {
    m as f64 / POW10[s]
}

/// The shortest decimal encoding (mode, scale, integers) of the mantissas `m`.
fn decimal_fields(scale: usize, m: &[i64]) -> Fields {
    let candidates = [MODE_RAW, MODE_DELTA, MODE_DOD].map(|mode| {
        let mut w = Fields::default();
        w.push(mode, 2);
        w.push(scale as u64, SCALE_BITS);
        match mode {
            MODE_RAW => w.append(residuals(m)),
            MODE_DELTA => {
                w.long(zigzag(m[0]));
                let deltas: Vec<i64> = m.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
                if !deltas.is_empty() {
                    w.append(residuals(&deltas));
                }
            }
            _ => {
                w.long(zigzag(m[0]));
                if let Some(&m1) = m.get(1) {
                    w.long(zigzag(m1.wrapping_sub(m[0])));
                }
                let dods: Vec<i64> = m.windows(3).map(|p| dod(p[0], p[1], p[2])).collect();
                if !dods.is_empty() {
                    w.append(residuals(&dods));
                }
            }
        }
        w
    });
    candidates
        .into_iter()
        .min_by_key(Fields::len)
        .unwrap_or_default()
}

fn read_decimal(r: &mut BitReader<'_>, mode: u64, n: usize) -> Result<Vec<f64>, ChunkError> {
    let scale = r.bits(SCALE_BITS)? as usize;
    if scale > MAX_SCALE {
        return Err(ChunkError::Corrupt("decimal scale out of range"));
    }
    let mut m: Vec<i64> = Vec::with_capacity(n.min(r.remaining()));
    match mode {
        MODE_RAW => m = read_residuals(r, n)?,
        MODE_DELTA => {
            m.push(unzigzag(r.long()?));
            if n >= 2 {
                for d in read_residuals(r, n - 1)? {
                    let last = m[m.len() - 1];
                    m.push(last.wrapping_add(d));
                }
            }
        }
        _ => {
            m.push(unzigzag(r.long()?));
            if n >= 2 {
                let d1 = unzigzag(r.long()?);
                m.push(m[0].wrapping_add(d1));
            }
            if n >= 3 {
                for d in read_residuals(r, n - 2)? {
                    let (a, b) = (m[m.len() - 2], m[m.len() - 1]);
                    m.push(b.wrapping_add(b.wrapping_sub(a)).wrapping_add(d));
                }
            }
        }
    }
    m.iter()
        .map(|&m| {
            if m.unsigned_abs() > MAX_MANTISSA as u64 {
                Err(ChunkError::Corrupt("decimal mantissa out of range"))
            } else {
                Ok(from_mantissa(m, scale))
            }
        })
        .collect()
}

/// The values in XOR mode (see the module docs), mode field included.
fn xor_fields(values: &[f64]) -> Fields {
    let mut f = Fields::default();
    f.push(MODE_XOR, 2);
    let Some((first, rest)) = values.split_first() else {
        return f;
    };
    let mut prev = first.to_bits();
    f.push(prev, 64);
    // The previous window: leading and trailing zeros of the last nonzero XOR.
    let mut window: Option<(u32, u32)> = None;
    for v in rest {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            f.push(0, 1);
            continue;
        }
        let (lz, tz) = (x.leading_zeros(), x.trailing_zeros());
        match window {
            Some((wl, wt)) if lz >= wl && tz >= wt => {
                f.push(0b10, 2);
                f.push(x >> wt, 64 - wl - wt);
            }
            _ => {
                let len = 64 - lz - tz;
                f.push(0b11, 2);
                f.push(u64::from(lz), 6);
                f.push(u64::from(len - 1), 6);
                f.push(x >> tz, len);
                window = Some((lz, tz));
            }
        }
    }
    f
}

fn read_xor(r: &mut BitReader<'_>, n: usize) -> Result<Vec<f64>, ChunkError> {
    let mut prev = r.bits(64)?;
    let mut out = Vec::with_capacity(n.min(r.remaining()));
    out.push(f64::from_bits(prev));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..n {
        if r.bit()? {
            let x = if r.bit()? {
                let lz = r.bits(6)? as u32;
                let len = r.bits(6)? as u32 + 1;
                if lz + len > 64 {
                    return Err(ChunkError::Corrupt("xor window wider than 64 bits"));
                }
                let tz = 64 - lz - len;
                window = Some((lz, tz));
                r.bits(len)? << tz
            } else {
                let (wl, wt) = window.ok_or(ChunkError::Corrupt("xor window used before set"))?;
                r.bits(64 - wl - wt)? << wt
            };
            if x == 0 {
                return Err(ChunkError::Corrupt("xor of zero written as a change"));
            }
            prev ^= x;
        }
        out.push(f64::from_bits(prev));
    }
    Ok(out)
}
