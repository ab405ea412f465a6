//! Tests of the packed minute row format: round trips of edge values and sparse bitmaps,
//! and garbage that must be refused without a panic.

use super::*;
use proptest::prelude::*;

fn agg(count: u64, sum: f64, min: f64, max: f64) -> Aggregate {
    Aggregate {
        count,
        sum,
        min,
        max,
    }
}

/// Bit patterns of every field, so -0.0 and 0.0 differ.
fn bits(row: &PackedHour) -> Vec<Option<(u64, u64, u64, u64)>> {
    row.0
        .iter()
        .map(|a| a.map(|a| (a.count, a.sum.to_bits(), a.min.to_bits(), a.max.to_bits())))
        .collect()
}

/// Counts, minima and maxima come back bit for bit, sums within [`SUM_TOLERANCE`].
fn assert_round_trip(row: &PackedHour) {
    let back = PackedHour::decode(&row.encode()).unwrap();
    for (m, (a, b)) in row.0.iter().zip(back.0).enumerate() {
        match (a, b) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                assert_eq!(
                    (a.count, a.min.to_bits(), a.max.to_bits()),
                    (b.count, b.min.to_bits(), b.max.to_bits()),
                    "minute {m}: {a:?} -> {b:?}"
                );
                assert!(
                    a.sum.to_bits() == b.sum.to_bits()
                        || (a.sum - b.sum).abs() <= a.sum.abs() * SUM_TOLERANCE,
                    "minute {m}: sum {} -> {}",
                    a.sum,
                    b.sum
                );
            }
            _ => panic!("minute {m}: {a:?} -> {b:?}"),
        }
    }
}

#[test]
fn edge_values_round_trip() {
    let edges = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 2.0,
        -f64::MIN_POSITIVE / 1024.0,
        5e-324,
        1e300,
        -1e-300,
        9_007_199_254_740_993.0,
        0.1 + 0.2,
        123.456,
    ];
    let mut row = PackedHour::EMPTY;
    for (m, &v) in edges.iter().enumerate() {
        row.0[m * 3] = Some(agg(m as u64 + 1, v, v, v));
        row.0[m * 3 + 1] = Some(agg(3, v, v.min(0.0), v.max(0.0)));
    }
    assert_round_trip(&row);
    // Exact values and sums that are not decimals keep their bits.
    let back = PackedHour::decode(&row.encode()).unwrap();
    assert_eq!(bits(&back)[3], bits(&row)[3], "-0.0");
    // Huge counts take the raw path.
    row.0[59] = Some(agg(u64::MAX, 1.0, 1.0, 1.0));
    assert_round_trip(&row);
}

#[test]
fn sparse_and_full_bitmaps_round_trip() {
    for minutes in [
        vec![0],
        vec![59],
        vec![0, 59],
        (0..60).collect(),
        vec![7, 8, 40],
    ] {
        let mut row = PackedHour::EMPTY;
        for &m in &minutes {
            let v = m as f64 * 0.25;
            row.0[m] = Some(agg(6, v * 6.0, v - 1.0, v + 1.0));
        }
        assert_round_trip(&row);
        assert_eq!(
            bits(&PackedHour::decode(&row.encode()).unwrap()),
            bits(&row)
        );
    }
}

#[test]
fn float_noise_sums_become_their_decimals() {
    // 0.1 + 0.2 is 0.30000000000000004 in floats: stored as 0.3.
    let noisy = 0.1 + 0.2;
    assert_ne!(noisy, 0.3);
    let mut row = PackedHour::EMPTY;
    for m in 0..60 {
        row.0[m] = Some(agg(2, noisy, 0.1, 0.2));
    }
    let encoded = row.encode();
    let back = PackedHour::decode(&encoded).unwrap();
    assert_eq!(back.0[0].unwrap().sum, 0.3);
    // An hour of constant minutes is a few bytes, not 60 rows of 32.
    assert!(encoded.len() < 40, "{} bytes", encoded.len());
}

#[test]
fn garbage_is_refused() {
    assert!(PackedHour::decode(&[]).is_err());
    assert!(PackedHour::decode(&[2; 20]).is_err());
    // A valid row with a byte added or removed.
    let mut row = PackedHour::EMPTY;
    row.0[3] = Some(agg(2, 3.0, 1.0, 2.0));
    let good = row.encode();
    let mut longer = good.clone();
    longer.push(0);
    assert!(PackedHour::decode(&longer).is_err());
    assert!(PackedHour::decode(&good[..good.len() - 1]).is_err());
    // An empty bitmap, minutes past 59, unknown flags.
    let mut bad = good.clone();
    bad[1..9].copy_from_slice(&0u64.to_le_bytes());
    assert!(PackedHour::decode(&bad).is_err());
    bad[1..9].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(PackedHour::decode(&bad).is_err());
    let mut bad = good;
    bad[9] = 8;
    assert!(PackedHour::decode(&bad).is_err());
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-10_000i64..10_000).prop_map(|m| m as f64 / 100.0),
        Just(0.0),
        Just(-0.0),
    ]
}

proptest! {
    #[test]
    fn any_row_round_trips(
        cells in prop::collection::vec(
            prop::option::of((1u64..1000, value(), value(), value())),
            60,
        )
    ) {
        let mut row = PackedHour::EMPTY;
        for (m, c) in cells.into_iter().enumerate() {
            row.0[m] = c.map(|(n, s, a, b)| agg(n, s, a.min(b), a.max(b)));
        }
        if !row.is_empty() {
            assert_round_trip(&row);
        }
    }

    #[test]
    fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PackedHour::decode(&bytes);
    }

    #[test]
    fn mutated_rows_decode_without_panic(at in 0usize..64, byte in any::<u8>()) {
        let mut row = PackedHour::EMPTY;
        for m in (0..60).step_by(3) {
            row.0[m] = Some(agg(6, m as f64 * 1.5, 0.25, m as f64));
        }
        let mut b = row.encode();
        let i = at % b.len();
        b[i] = byte;
        let _ = PackedHour::decode(&b);
    }
}
