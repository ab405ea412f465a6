//! Packed sample rows: the one codec for rows that hold many samples of many series, shared
//! by the head (`head.rs`) and the remote-write outbox (`outbox.rs`).
//!
//! A row is a varint sample count, then per sample a varint series id, the zigzag varint
//! difference of its time (ms) from the previous sample's (the first from 0), and the value
//! as `f64` little-endian, bit for bit.

use super::StoreError;

/// Appends `v` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, StoreError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| StoreError::Corrupt("truncated sample row".into()))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(StoreError::Corrupt("bad varint in a sample row".into()))
}

/// Encodes `samples` (series id, ts, value) as one row into `out` (cleared first).
pub(super) fn encode_row(samples: &[(u64, i64, f64)], out: &mut Vec<u8>) {
    out.clear();
    put_varint(out, samples.len() as u64);
    let mut prev = 0i64;
    for &(id, ts, v) in samples {
        put_varint(out, id);
        let d = ts.wrapping_sub(prev);
        put_varint(out, ((d << 1) ^ (d >> 63)) as u64);
        prev = ts;
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The number of samples in a row.
pub(super) fn row_len(row: &[u8]) -> Result<u64, StoreError> {
    get_varint(row, &mut 0)
}

/// Appends a row's samples to `out`.
pub(super) fn decode_row(row: &[u8], out: &mut Vec<(u64, i64, f64)>) -> Result<(), StoreError> {
    let mut pos = 0;
    let n = get_varint(row, &mut pos)?;
    let mut prev = 0i64;
    for _ in 0..n {
        let id = get_varint(row, &mut pos)?;
        let z = get_varint(row, &mut pos)?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let ts = prev.wrapping_add(d);
        prev = ts;
        let bytes = row
            .get(pos..pos + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| StoreError::Corrupt("truncated sample row".into()))?;
        pos += 8;
        out.push((id, ts, f64::from_le_bytes(bytes)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let samples = vec![
            (1, 1_700_000_000_000, 1.5),
            (300_000, 1_699_999_999_000, -0.0),
            (u64::MAX, i64::MIN, f64::INFINITY),
            (2, i64::MAX, f64::MIN_POSITIVE / 4.0),
            (3, i64::MIN, f64::NAN),
        ];
        let mut buf = Vec::new();
        encode_row(&samples, &mut buf);
        assert_eq!(row_len(&buf).unwrap(), 5);
        let mut out = Vec::new();
        decode_row(&buf, &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(&samples) {
            assert_eq!((a.0, a.1, a.2.to_bits()), (b.0, b.1, b.2.to_bits()));
        }
        for cut in 0..buf.len() {
            assert!(
                decode_row(&buf[..cut], &mut Vec::new()).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode_row(&[0xff; 11], &mut Vec::new()).is_err());
    }
}
