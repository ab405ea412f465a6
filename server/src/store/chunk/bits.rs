//! Bit-level writing and reading for the chunk codec: raw bit fields, LEB128 varints, zigzag,
//! and the two integer codes the chunk format uses (a Rice code with an escape, and a
//! length-prefixed "long" code for any 64-bit value).
//!
//! Bits are written most significant first into bytes filled from their top bit; the last
//! byte is padded with zero bits. The reader never panics: every read past the end, and
//! every field outside its range, is a [`ChunkError::Corrupt`].

use super::ChunkError;

/// Quotients of a Rice code from this value up are not written in unary: `ESCAPE` one bits
/// are followed by the value in the long code instead.
pub(super) const ESCAPE: u64 = 16;
/// Width of a Rice parameter field (0..=63).
pub(super) const RICE_K_BITS: u32 = 6;
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

/// Cost in bits of `z` in the Rice code with parameter `k` (see [`BitWriter::rice`]).
pub(super) const fn rice_cost(z: u64, k: u32) -> u64 {
    let q = if k >= 64 { 0 } else { z >> k };
    if q < ESCAPE {
        q + 1 + k as u64
    } else {
        ESCAPE + long_cost(z)
    }
}

/// Cost in bits of `z` in the long code.
const fn long_cost(z: u64) -> u64 {
    LONG_LEN_BITS as u64 + bit_len(z) as u64
}

/// The Rice parameter that writes `values` in the fewest bits, and that many bits.
pub(super) fn best_rice(values: &[u64]) -> (u32, u64) {
    let mut best = (0, u64::MAX);
    // Past the widest value's bit length every larger k only costs more.
    let widest = values.iter().map(|&z| bit_len(z)).max().unwrap_or(0).min(63);
    for k in 0..=widest {
        let cost: u64 = values.iter().map(|&z| rice_cost(z, k)).sum();
        if cost < best.1 {
            best = (k, cost);
        }
    }
    best
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

    /// `z` in the Rice code with parameter `k` (< 64): the quotient `z >> k` in unary (that
    /// many one bits, then a zero) followed by the low `k` bits; a quotient of [`ESCAPE`] or
    /// more is [`ESCAPE`] one bits followed by `z` in the long code.
    pub(super) fn rice(&mut self, z: u64, k: u32) {
        let q = z >> k;
        if q < ESCAPE {
            // q < 16, so the unary part and its terminating zero fit one field.
            self.push(((1u64 << q) - 1) << 1, q as u32 + 1);
            self.push(z, k);
        } else {
            self.push((1u64 << ESCAPE) - 1, ESCAPE as u32);
            self.long(z);
        }
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

    /// Reads what [`BitWriter::rice`] wrote with parameter `k`.
    pub(super) fn rice(&mut self, k: u32) -> Result<u64, ChunkError> {
        let mut q = 0u64;
        while q < ESCAPE && self.bit()? {
            q += 1;
        }
        if q == ESCAPE {
            let z = self.long()?;
            if k < 64 && z >> k < ESCAPE {
                return Err(ChunkError::Corrupt("escaped rice value is small"));
            }
            return Ok(z);
        }
        Ok((q << k) | self.bits(k)?)
    }

    /// Reads what [`BitWriter::long`] wrote.
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
