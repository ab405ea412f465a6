//! Bit-level writing and reading for the chunk codec: raw bit fields, LEB128 varints, zigzag,
//! and the integer codes the chunk format uses: a [`Code`] for runs of small values (Rice
//! with an escape, or Exp-Golomb, with a parameter chosen per run) and a length-prefixed
//! "long" code for any 64-bit value.
//!
//! Bits are written most significant first into bytes filled from their top bit; the last
//! byte is padded with zero bits. The reader never panics: every read past the end, and
//! every field outside its range, is a [`ChunkError::Corrupt`].

use super::ChunkError;

/// Quotients of a Rice code from this value up are not written in unary: `ESCAPE` one bits
/// are followed by the value in the long code instead.
const ESCAPE: u64 = 16;
/// How far below the mean's bit length [`Code::best`] looks for a parameter.
const BAND_BELOW: u32 = 6;
/// Width of a code's parameter field (0..=63).
const K_BITS: u32 = 6;
/// Width of the length field of the long code (0..=64).
const LONG_LEN_BITS: u32 = 7;

/// Maps signed to unsigned so that small magnitudes get small codes: 0, -1, 1, -2, ...
pub(super) const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub(super) const fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Bits needed to write `v` (0 for 0).
const fn bit_len(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Cost in bits of `z` in the long code.
const fn long_cost(z: u64) -> u64 {
    LONG_LEN_BITS as u64 + bit_len(z) as u64
}

/// A code for a run of unsigned integers, written once before the run as one bit for the
/// kind and six bits for the parameter `k` (< 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Code {
    /// The quotient `z >> k` in unary (that many one bits, then a zero) and the low `k`
    /// bits; a quotient of [`ESCAPE`] or more is [`ESCAPE`] one bits and `z` in the long
    /// code. Best for values of one size.
    Rice(u32),
    /// `q = z >> k` as the Elias gamma code of `q + 1` (its bit length - 1 in zero bits,
    /// then its bits from the top one down) and the low `k` bits. Best for a spread of sizes:
    /// mostly small values with rare large jumps.
    ExpGolomb(u32),
}

impl Code {
    /// The code that writes `values` in the fewest bits.
    pub(super) fn best(values: &[u64]) -> Self {
        // The best parameter of either code lies a few bits below the bit length of the
        // mean (Rice: about log2 of the mean; Exp-Golomb: lower, for spread-out values), so
        // only that band is tried, plus 0 for runs of mostly zeros.
        let n = values.len().max(1) as u128;
        let mean = values.iter().map(|&z| u128::from(z)).sum::<u128>() / n;
        let top = bit_len(u64::try_from(mean).unwrap_or(u64::MAX)).min(63);
        let band = top.saturating_sub(BAND_BELOW)..=top;
        std::iter::once(0)
            .chain(band)
            .flat_map(|k| [Self::Rice(k), Self::ExpGolomb(k)])
            .min_by_key(|code| values.iter().map(|&z| code.cost(z)).sum::<u64>())
            .unwrap_or(Self::Rice(0))
    }

    /// Cost in bits of `z`.
    const fn cost(self, z: u64) -> u64 {
        match self {
            Self::Rice(k) => {
                let q = z >> k;
                if q < ESCAPE {
                    q + 1 + k as u64
                } else {
                    ESCAPE + long_cost(z)
                }
            }
            Self::ExpGolomb(k) => {
                // The gamma code of q + 1 has 2 * bit_len(q + 1) - 1 bits.
                let q = z >> k;
                let n = if q == u64::MAX {
                    65
                } else {
                    bit_len(q + 1) as u64
                };
                2 * n - 1 + k as u64
            }
        }
    }

    /// Writes the code's kind and parameter.
    pub(super) fn write_header(self, f: &mut Fields) {
        match self {
            Self::Rice(k) => {
                f.push(0, 1);
                f.push(u64::from(k), K_BITS);
            }
            Self::ExpGolomb(k) => {
                f.push(1, 1);
                f.push(u64::from(k), K_BITS);
            }
        }
    }

    /// Reads what [`Code::write_header`] wrote.
    pub(super) fn read_header(r: &mut BitReader<'_>) -> Result<Self, ChunkError> {
        let kind = r.bit()?;
        let k = r.bits(K_BITS)? as u32;
        Ok(if kind {
            Self::ExpGolomb(k)
        } else {
            Self::Rice(k)
        })
    }

    /// Writes `z`.
    pub(super) fn write(self, f: &mut Fields, z: u64) {
        match self {
            Self::Rice(k) => {
                let q = z >> k;
                if q < ESCAPE {
                    // q < 16, so the unary part and its terminating zero fit one field.
                    f.push(((1u64 << q) - 1) << 1, q as u32 + 1);
                    f.push(z, k);
                } else {
                    f.push((1u64 << ESCAPE) - 1, ESCAPE as u32);
                    f.long(z);
                }
            }
            Self::ExpGolomb(k) => {
                let q1 = u128::from(z >> k) + 1;
                let n = 128 - q1.leading_zeros();
                f.push(0, n - 1);
                f.push(1, 1);
                // The bits of q + 1 below its top one: at most 64 of them.
                f.push(q1 as u64, n - 1);
                f.push(z, k);
            }
        }
    }

    /// Reads one value written with [`Code::write`].
    pub(super) fn read(self, r: &mut BitReader<'_>) -> Result<u64, ChunkError> {
        match self {
            Self::Rice(k) => {
                let mut q = 0u64;
                while q < ESCAPE && r.bit()? {
                    q += 1;
                }
                if q == ESCAPE {
                    let z = r.long()?;
                    if z >> k < ESCAPE {
                        return Err(ChunkError::Corrupt("escaped rice value is small"));
                    }
                    return Ok(z);
                }
                Ok((q << k) | r.bits(k)?)
            }
            Self::ExpGolomb(k) => {
                let mut zeros = 0u32;
                while !r.bit()? {
                    zeros += 1;
                    if zeros > 64 {
                        return Err(ChunkError::Corrupt("gamma code longer than 65 bits"));
                    }
                }
                let low = u128::from(r.bits(zeros)?);
                let q = ((1u128 << zeros) | low) - 1;
                let q = u64::try_from(q)
                    .ok()
                    .filter(|&q| k == 0 || q >> (64 - k) == 0)
                    .ok_or(ChunkError::Corrupt("gamma value wider than 64 bits"))?;
                Ok((q << k) | r.bits(k)?)
            }
        }
    }
}

/// Appends bit fields to a byte vector.
#[derive(Debug)]
pub(super) struct BitWriter {
    out: Vec<u8>,
    /// Pending bits, right-aligned; `pending` of them are valid.
    acc: u64,
    pending: u32,
}

impl BitWriter {
    /// Starts writing bits after `out`'s existing bytes.
    pub(super) const fn new(out: Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            pending: 0,
        }
    }

    /// Writes the low `n` bits of `v` (`n` <= 64), most significant first.
    pub(super) fn bits(&mut self, v: u64, n: u32) {
        if n > 32 {
            self.bits(v >> 32, n - 32);
            self.bits(v, 32);
            return;
        }
        if n == 0 {
            return;
        }
        let v = v & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            // Truncation intended: the byte just completed.
            self.out.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u64 << self.pending) - 1;
    }

    /// Writes collected fields.
    pub(super) fn fields(&mut self, f: &Fields) {
        for &(v, n) in &f.fields {
            self.bits(v, n);
        }
    }

    /// Pads the last byte with zero bits and returns the bytes.
    pub(super) fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            let pad = 8 - self.pending;
            self.bits(0, pad);
        }
        self.out
    }
}

/// Bit fields collected before they are written, so that candidate encodings can be
/// compared by length.
#[derive(Debug, Default)]
pub(super) struct Fields {
    fields: Vec<(u64, u32)>,
    len: u64,
}

impl Fields {
    /// The low `n` bits of `v` (`n` <= 64).
    pub(super) fn push(&mut self, v: u64, n: u32) {
        self.fields.push((v, n));
        self.len += u64::from(n);
    }

    /// Any 64-bit value as its bit length (7 bits) then that many bits.
    pub(super) fn long(&mut self, z: u64) {
        let n = bit_len(z);
        self.push(u64::from(n), LONG_LEN_BITS);
        self.push(z, n);
    }

    /// Appends another list of fields.
    pub(super) fn append(&mut self, other: Self) {
        self.fields.extend(other.fields);
        self.len += other.len;
    }

    /// Length in bits.
    pub(super) const fn len(&self) -> u64 {
        self.len
    }
}

/// Appends `v` as an unsigned LEB128 varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint from the front of `bytes`, advancing it.
pub(super) fn take_varint(bytes: &mut &[u8]) -> Result<u64, ChunkError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = bytes.split_first() else {
            return Err(ChunkError::Corrupt("chunk ends inside a varint"));
        };
        *bytes = rest;
        let low = u64::from(b & 0x7f);
        if shift == 63 && low > 1 {
            return Err(ChunkError::Corrupt("varint overflows 64 bits"));
        }
        v |= low << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ChunkError::Corrupt("varint longer than 10 bytes"))
}

/// Reads bit fields from a byte slice.
#[derive(Debug)]
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start of `bytes`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(super) const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bits not read yet.
    pub(super) const fn remaining(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    /// Reads `n` bits (`n` <= 64), most significant first.
    pub(super) fn bits(&mut self, n: u32) -> Result<u64, ChunkError> {
        if n as usize > self.remaining() {
            return Err(ChunkError::Corrupt("chunk ends inside a bit field"));
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let used = (self.pos % 8) as u32;
            let avail = 8 - used;
            let take = avail.min(left);
            let part = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            // `take` < 64 here, and `v` holds fewer than 64 - take bits so far.
            v = (v << take) | part;
            left -= take;
            self.pos += take as usize;
        }
        Ok(v)
    }

    /// Reads one bit.
    pub(super) fn bit(&mut self) -> Result<bool, ChunkError> {
        Ok(self.bits(1)? == 1)
    }

    /// Reads what [`Fields::long`] wrote.
    pub(super) fn long(&mut self) -> Result<u64, ChunkError> {
        let n = self.bits(LONG_LEN_BITS)?;
        if n > 64 {
            return Err(ChunkError::Corrupt("long value wider than 64 bits"));
        }
        self.bits(n as u32)
    }

    /// Checks that only the zero padding of the last byte is left.
    pub(super) fn finish(mut self) -> Result<(), ChunkError> {
        let left = self.remaining();
        if left >= 8 {
            return Err(ChunkError::Corrupt("bytes after the end of the chunk"));
        }
        if self.bits(left as u32)? != 0 {
            return Err(ChunkError::Corrupt("nonzero padding"));
        }
        Ok(())
    }
}
