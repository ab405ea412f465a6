use super::bits::{BitReader, BitWriter, Code, Fields, put_varint, take_varint, unzigzag, zigzag};
use super::*;
use proptest::prelude::*;

/// Encodes, decodes and compares bit for bit; returns the chunk.
fn round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
    let bytes = encode(samples);
    let back = decode(&bytes).unwrap_or_else(|e| panic!("{e} for {samples:?}"));
    let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(samples), "chunk {bytes:02x?}");
    bytes
}

/// `n` samples every `step` ms from `t0` with the values of `f`.
fn series(t0: i64, step: i64, n: usize, f: impl Fn(usize) -> f64) -> Vec<(i64, f64)> {
    (0..n).map(|i| (t0 + step * i as i64, f(i))).collect()
}

const T0: i64 = 1_796_669_727_417;

#[test]
fn empty_and_single_samples() {
    assert_eq!(round_trip(&[]), vec![FORMAT_V1, 0]);
    for v in [
        0.0,
        -0.0,
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::MIN_POSITIVE / 2.0,
    ] {
        round_trip(&[(T0, v)]);
    }
    round_trip(&[(T0, 1.0), (T0 + 10_000, 2.0)]);
}

#[test]
fn special_values_round_trip_bit_for_bit() {
    let nan_payload = f64::from_bits(0x7ff8_0000_dead_beef);
    let negative_nan = f64::from_bits(0xfff0_0000_0000_0001);
    let specials = [
        f64::NAN,
        nan_payload,
        negative_nan,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        -f64::from_bits(1),
        f64::EPSILON,
        9_007_199_254_740_993.0,
    ];
    for (i, &v) in specials.iter().enumerate() {
        // Alone in a chunk, next to decimals, and in a decimal-looking run.
        round_trip(&series(T0, 10_000, 5, |_| v));
        round_trip(&series(
            T0,
            10_000,
            7,
            |j| if j == i % 7 { v } else { 12.5 },
        ));
    }
    round_trip(&series(T0, 10_000, specials.len(), |i| specials[i]));
}

#[test]
fn negative_zero_is_not_stored_as_zero() {
    let s = series(T0, 10_000, 4, |i| if i == 2 { -0.0 } else { 0.0 });
    let back = decode(&encode(&s)).unwrap();
    assert_eq!(back[2].1.to_bits(), (-0.0f64).to_bits());
    assert_eq!(back[1].1.to_bits(), 0.0f64.to_bits());
}

#[test]
fn extreme_timestamps_and_gaps_round_trip() {
    round_trip(&[(i64::MIN, 1.0), (i64::MIN + 1, 2.0), (i64::MAX, 3.0)]);
    round_trip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
    round_trip(&[(-5, 1.0), (i64::MAX - 1, 2.0), (i64::MAX, 3.0)]);
    round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
    // Irregular: jitter, a long gap, a burst.
    let ts = [
        0, 10_003, 19_998, 30_001, 900_000, 900_001, 900_002, 910_000,
    ];
    let s: Vec<_> = ts.iter().map(|&t| (T0 + t, t as f64 / 7.0)).collect();
    round_trip(&s);
}

#[test]
fn decimal_extremes_round_trip() {
    let big = (1i64 << 53) as f64;
    round_trip(&series(T0, 1, 4, |i| if i % 2 == 0 { big } else { -big }));
    round_trip(&series(T0, 1, 4, |i| big + 2.0 * i as f64));
    round_trip(&series(T0, 1, 3, |i| [1e-15, -1e-15, 0.0][i]));
    round_trip(&series(T0, 1, 3, |i| [0.1, 0.2, 0.30000000000000004][i]));
    round_trip(&series(T0, 1, 3, |i| [1e300, 1e-300, 5.0][i]));
}

#[test]
fn regular_decimal_series_are_small() {
    // A gauge with two decimals moving a little: well under two bytes a sample.
    let s = series(T0, 10_000, 360, |i| ((i * 37 % 11) as f64 + 4000.0) / 100.0);
    let bytes = round_trip(&s);
    assert!(bytes.len() < 360 * 2, "{} bytes", bytes.len());
    // Jittered timestamps cost a few bits each; a constant value costs none.
    let jitter = [0, 3, -2, 1, 0, -1];
    let mut s = series(T0, 10_000, 360, |_| 25_276_182_528.0);
    let bytes = round_trip(&s);
    assert!(bytes.len() < 40, "{} bytes", bytes.len());
    for (i, p) in s.iter_mut().enumerate() {
        p.0 += jitter[i % jitter.len()];
    }
    let bytes = round_trip(&s);
    assert!(bytes.len() * 8 < 360 * 4, "{} bytes", bytes.len());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(decode(&[]).is_err());
    assert!(decode(&[2, 0]).is_err(), "unknown version");
    assert!(
        decode(&[FORMAT_V1, 0, 0]).is_err(),
        "bytes after an empty chunk"
    );
    assert!(
        decode(&[
            FORMAT_V1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
        ])
        .is_err()
    );
    let s = series(T0, 10_003, 100, |i| (i as f64).sin());
    let bytes = encode(&s);
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "truncated to {cut}");
    }
    let mut huge = vec![FORMAT_V1];
    put_varint(&mut huge, MAX_SAMPLES as u64 + 1);
    huge.extend_from_slice(&bytes[bytes.len() - 20..]);
    assert_eq!(
        decode(&huge),
        Err(ChunkError::Corrupt(
            "sample count larger than a chunk holds"
        ))
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer).is_err(), "a trailing byte");
}

#[test]
fn bit_codes_round_trip() {
    let values = [0, 1, 2, 15, 16, 17, 1 << 20, u64::MAX - 1, u64::MAX];
    let codes = [0, 1, 5, 63]
        .into_iter()
        .flat_map(|k| [Code::Rice(k), Code::ExpGolomb(k)]);
    for code in codes {
        let mut f = Fields::default();
        code.write_header(&mut f);
        for &z in &values {
            code.write(&mut f, z);
            f.long(z);
        }
        let mut w = BitWriter::new(Vec::new());
        w.fields(&f);
        let bytes = w.finish();
        assert_eq!(bytes.len() as u64, f.len().div_ceil(8));
        let mut r = BitReader::new(&bytes);
        assert_eq!(Code::read_header(&mut r), Ok(code));
        for &z in &values {
            assert_eq!(code.read(&mut r), Ok(z), "{code:?}");
            assert_eq!(r.long().unwrap(), z, "long");
        }
        r.finish().unwrap();
    }
    for v in [0, 1, -1, i64::MIN, i64::MAX] {
        assert_eq!(unzigzag(zigzag(v)), v);
        let mut out = Vec::new();
        put_varint(&mut out, zigzag(v));
        let mut rest = out.as_slice();
        assert_eq!(take_varint(&mut rest).map(unzigzag), Ok(v));
        assert!(rest.is_empty());
    }
}

/// Values as real agents send them: decimals, repeats, counters, and any bit pattern.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        (-100_000i64..100_000, 0usize..4).prop_map(|(m, s)| m as f64 / POW10[s]),
        Just(-0.0),
        Just(f64::NAN),
        Just(1.0),
    ]
}

/// Timestamps: strictly ascending with jittered steps, or any i64s at all.
fn timestamps() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        (any::<i64>(), prop::collection::vec(1i64..20_000, 0..300)).prop_map(|(t0, steps)| {
            let mut t = t0;
            let mut out = vec![t];
            for s in steps {
                t = t.wrapping_add(s);
                out.push(t);
            }
            out
        }),
        prop::collection::vec(any::<i64>(), 0..50),
    ]
}

proptest! {
    #[test]
    fn any_samples_round_trip(ts in timestamps(), seed in prop::collection::vec(value(), 1..300)) {
        let samples: Vec<(i64, f64)> =
            ts.iter().zip(seed.iter().cycle()).map(|(&t, &v)| (t, v)).collect();
        round_trip(&samples);
    }

    #[test]
    fn decimal_walks_round_trip(
        start in -1_000_000i64..1_000_000,
        steps in prop::collection::vec(-500i64..500, 0..300),
        scale in 0usize..=6,
    ) {
        let mut m = start;
        let mut samples = vec![(T0, m as f64 / POW10[scale])];
        for (i, s) in steps.into_iter().enumerate() {
            m += s;
            samples.push((T0 + 10_000 * (i as i64 + 1), m as f64 / POW10[scale]));
        }
        round_trip(&samples);
    }

    #[test]
    fn decode_of_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
        let mut versioned = vec![FORMAT_V1];
        versioned.extend_from_slice(&bytes);
        let _ = decode(&versioned);
    }

    #[test]
    fn decode_of_corrupted_chunks_never_panics(
        ts in timestamps(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
    ) {
        let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, (t % 1000) as f64 / 10.0)).collect();
        let mut bytes = encode(&samples);
        for (at, bit) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        // A flipped bit may still decode to other samples; it must not panic.
        let _ = decode(&bytes);
    }
}
