//! The value and timestamp encodings of InfluxDB 1.x TSM blocks
//! (`tsdb/engine/tsm1`): every part starts with a byte whose high 4 bits
//! select the encoding.
//!
//! - timestamps: delta, scaled by the largest power of ten (≤ 10¹²) dividing
//!   every delta (low 4 bits), then run-length (equal deltas), simple8b, or
//!   raw when a delta exceeds 60 bits;
//! - integers and unsigned: zigzag deltas, then run-length, simple8b or raw;
//! - floats: Gorilla XOR compression ending with a NaN sentinel (so NaN
//!   itself cannot be stored);
//! - booleans: a count and the bits packed most significant first;
//! - strings: length-prefixed strings compressed with snappy (block format).

use super::TsmError;
use super::bits::{BitReader, BitWriter};
use super::simple8b::{self, MAX_VALUE};

const RAW: u8 = 0;
const PACKED: u8 = 1;
const RLE: u8 = 2;
/// The float end-of-block sentinel (a NaN).
const UVNAN: u64 = 0x7FF8_0000_0000_0001;
/// No block decodes to more values than this.
pub const MAX_BLOCK_VALUES: usize = 1 << 22;

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a uvarint; returns it and the bytes used.
pub(crate) fn uvarint(b: &[u8]) -> Result<(u64, usize), TsmError> {
    let mut v = 0u64;
    for (i, &c) in b.iter().enumerate().take(10) {
        if i == 9 && c > 1 {
            break;
        }
        v |= u64::from(c & 0x7F) << (7 * i);
        if c < 0x80 {
            return Ok((v, i + 1));
        }
    }
    Err(TsmError::corrupt("bad varint"))
}

pub(crate) fn append_uvarint(out: &mut Vec<u8>, v: u64) {
    put_uvarint(out, v)
}

fn be64(b: &[u8], at: usize) -> Result<u64, TsmError> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().unwrap_or_default()))
        .ok_or_else(|| TsmError::corrupt("block too short"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes timestamps (ascending).
pub fn encode_timestamps(ts: &[i64]) -> Result<Vec<u8>, TsmError> {
    if ts.is_empty() {
        return Ok(Vec::new());
    }
    let mut d: Vec<u64> = ts.iter().map(|&t| t as u64).collect();
    let (mut max, mut div, mut rle) = (0u64, 1_000_000_000_000u64, true);
    for i in (1..d.len()).rev() {
        d[i] = d[i].wrapping_sub(d[i - 1]);
        let v = d[i];
        max = max.max(v);
        while div > 1 && !v.is_multiple_of(div) {
            div /= 10;
        }
        rle = i == d.len() - 1 || (rle && d[i + 1] == d[i]);
    }
    let log = div.ilog10() as u8;
    let mut out = Vec::with_capacity(16);
    if rle && d.len() > 1 {
        out.push(RLE << 4 | log);
        out.extend_from_slice(&d[0].to_be_bytes());
        put_uvarint(&mut out, d[1] / div);
        put_uvarint(&mut out, d.len() as u64);
    } else if max > MAX_VALUE {
        out.push(RAW << 4);
        for v in &d {
            out.extend_from_slice(&v.to_be_bytes());
        }
    } else {
        let scaled: Vec<u64> = d[1..].iter().map(|v| v / div).collect();
        out.push(PACKED << 4 | log);
        out.extend_from_slice(&d[0].to_be_bytes());
        for w in simple8b::encode_all(&scaled)? {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }
    Ok(out)
}

/// Decodes timestamps.
pub fn decode_timestamps(b: &[u8]) -> Result<Vec<i64>, TsmError> {
    let Some(&head) = b.first() else {
        return Ok(Vec::new());
    };
    let log = u32::from(head & 0xF);
    if log > 18 {
        return Err(TsmError::corrupt("timestamp scale out of range"));
    }
    let div = 10u64.pow(log);
    match head >> 4 {
        RAW => {
            let body = &b[1..];
            if !body.len().is_multiple_of(8) {
                return Err(TsmError::corrupt(
                    "raw timestamps not a multiple of 8 bytes",
                ));
            }
            let mut acc = 0u64;
            Ok(body
                .chunks_exact(8)
                .enumerate()
                .map(|(i, c)| {
                    let v = u64::from_be_bytes(c.try_into().unwrap_or_default());
                    acc = if i == 0 { v } else { acc.wrapping_add(v) };
                    acc as i64
                })
                .collect())
        }
        PACKED => {
            let first = be64(b, 1)?;
            let body = &b[9..];
            if !body.len().is_multiple_of(8) {
                return Err(TsmError::corrupt(
                    "packed timestamps not a multiple of 8 bytes",
                ));
            }
            let mut deltas = Vec::new();
            let words = body
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()));
            simple8b::decode_all(words, &mut deltas, MAX_BLOCK_VALUES)?;
            let mut out = Vec::with_capacity(deltas.len() + 1);
            let mut acc = first;
            out.push(acc as i64);
            for dv in deltas {
                acc = acc.wrapping_add(dv.wrapping_mul(div));
                out.push(acc as i64);
            }
            Ok(out)
        }
        RLE => {
            let first = be64(b, 1)?;
            let (delta, n1) = uvarint(&b[9..])?;
            let (count, _) = uvarint(&b[9 + n1..])?;
            if count as usize > MAX_BLOCK_VALUES {
                return Err(TsmError::corrupt("run-length count too large"));
            }
            let step = delta.wrapping_mul(div);
            Ok((0..count)
                .map(|i| first.wrapping_add(step.wrapping_mul(i)) as i64)
                .collect())
        }
        e => Err(TsmError::corrupt(format!("unknown timestamp encoding {e}"))),
    }
}

/// Encodes integers.
pub fn encode_integers(vals: &[i64]) -> Result<Vec<u8>, TsmError> {
    let mut enc = Vec::with_capacity(vals.len());
    let mut prev = 0i64;
    let mut rle = true;
    for &v in vals {
        let z = zigzag(v.wrapping_sub(prev));
        prev = v;
        if enc.len() > 1 {
            rle = rle && enc[enc.len() - 1] == z;
        }
        enc.push(z);
    }
    let mut out = Vec::new();
    if enc.is_empty() {
        return Ok(out);
    }
    if rle && enc.len() > 2 {
        out.push(RLE << 4);
        out.extend_from_slice(&enc[0].to_be_bytes());
        put_uvarint(&mut out, enc[1]);
        put_uvarint(&mut out, enc.len() as u64 - 1);
    } else if enc.iter().any(|&v| v > MAX_VALUE) {
        out.push(RAW << 4);
        for v in &enc {
            out.extend_from_slice(&v.to_be_bytes());
        }
    } else {
        out.push(PACKED << 4);
        out.extend_from_slice(&enc[0].to_be_bytes());
        for w in simple8b::encode_all(&enc[1..])? {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }
    Ok(out)
}

/// Decodes integers.
pub fn decode_integers(b: &[u8]) -> Result<Vec<i64>, TsmError> {
    let Some(&head) = b.first() else {
        return Ok(Vec::new());
    };
    let mut zz = Vec::new();
    match head >> 4 {
        RAW => {
            let body = &b[1..];
            if !body.len().is_multiple_of(8) {
                return Err(TsmError::corrupt("raw integers not a multiple of 8 bytes"));
            }
            zz.extend(
                body.chunks_exact(8)
                    .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())),
            );
        }
        PACKED => {
            zz.push(be64(b, 1)?);
            let body = &b[9..];
            if !body.len().is_multiple_of(8) {
                return Err(TsmError::corrupt(
                    "packed integers not a multiple of 8 bytes",
                ));
            }
            let words = body
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()));
            simple8b::decode_all(words, &mut zz, MAX_BLOCK_VALUES)?;
        }
        RLE => {
            let first = unzigzag(be64(b, 1)?);
            let (delta, n1) = uvarint(&b[9..])?;
            let (count, _) = uvarint(&b[9 + n1..])?;
            if count as usize >= MAX_BLOCK_VALUES {
                return Err(TsmError::corrupt("run-length count too large"));
            }
            let delta = unzigzag(delta);
            return Ok((0..=count)
                .map(|i| first.wrapping_add(delta.wrapping_mul(i as i64)))
                .collect());
        }
        e => return Err(TsmError::corrupt(format!("unknown integer encoding {e}"))),
    }
    let mut acc = 0i64;
    Ok(zz
        .into_iter()
        .map(|z| {
            acc = acc.wrapping_add(unzigzag(z));
            acc
        })
        .collect())
}

/// Encodes floats (NaN refused: it is the block's end marker).
pub fn encode_floats(vals: &[f64]) -> Result<Vec<u8>, TsmError> {
    if let Some(i) = vals.iter().position(|v| v.is_nan()) {
        return Err(TsmError::Encode(format!(
            "value {i} is NaN, which TSM cannot store"
        )));
    }
    let mut w = BitWriter::default();
    let mut prev = 0u64;
    let (mut lead, mut trail) = (u64::MAX, 0u64);
    let bits = vals
        .iter()
        .map(|v| v.to_bits())
        .chain(std::iter::once(UVNAN));
    for (i, v) in bits.enumerate() {
        if i == 0 {
            w.write(v, 64);
            prev = v;
            continue;
        }
        let x = v ^ prev;
        if x == 0 {
            w.write(0, 1);
        } else {
            w.write(1, 1);
            let l = u64::from(x.leading_zeros()).min(31);
            let t = u64::from(x.trailing_zeros());
            if lead != u64::MAX && l >= lead && t >= trail {
                w.write(0, 1);
                w.write(x >> trail, (64 - lead - trail) as u32);
            } else {
                lead = l;
                trail = t;
                w.write(1, 1);
                w.write(l, 5);
                let sig = 64 - l - t;
                w.write(sig & 63, 6);
                w.write(x >> t, sig as u32);
            }
        }
        prev = v;
    }
    let mut out = vec![1 << 4];
    out.extend(w.finish());
    Ok(out)
}

/// Decodes floats.
pub fn decode_floats(b: &[u8]) -> Result<Vec<f64>, TsmError> {
    let Some(&head) = b.first() else {
        return Ok(Vec::new());
    };
    if head >> 4 != 1 {
        return Err(TsmError::corrupt(format!(
            "unknown float encoding {}",
            head >> 4
        )));
    }
    let mut r = BitReader::new(&b[1..]);
    let mut v = r.read(64)?;
    let mut out = Vec::new();
    let (mut lead, mut trail) = (0u64, 0u64);
    loop {
        if v == UVNAN {
            return Ok(out);
        }
        if out.len() >= MAX_BLOCK_VALUES {
            return Err(TsmError::corrupt("float block has no end marker"));
        }
        out.push(f64::from_bits(v));
        if r.read(1)? == 0 {
            continue;
        }
        if r.read(1)? == 1 {
            lead = r.read(5)?;
            let mut sig = r.read(6)?;
            if sig == 0 {
                sig = 64;
            }
            if lead + sig > 64 {
                return Err(TsmError::corrupt("float block: bad bit widths"));
            }
            trail = 64 - lead - sig;
        }
        let n = 64 - lead - trail;
        let x = r.read(n as u32)?;
        v ^= if trail >= 64 { 0 } else { x << trail };
    }
}

/// Encodes booleans.
pub fn encode_booleans(vals: &[bool]) -> Vec<u8> {
    let mut out = vec![1 << 4];
    put_uvarint(&mut out, vals.len() as u64);
    let start = out.len();
    out.resize(start + vals.len().div_ceil(8), 0);
    for (i, &v) in vals.iter().enumerate() {
        if v {
            out[start + (i >> 3)] |= 128 >> (i & 7);
        }
    }
    out
}

/// Decodes booleans.
pub fn decode_booleans(b: &[u8]) -> Result<Vec<bool>, TsmError> {
    let Some(&head) = b.first() else {
        return Ok(Vec::new());
    };
    if head >> 4 != 1 {
        return Err(TsmError::corrupt(format!(
            "unknown boolean encoding {}",
            head >> 4
        )));
    }
    let (n, used) = uvarint(&b[1..])?;
    let bits = &b[1 + used..];
    if n > bits.len() as u64 * 8 {
        return Err(TsmError::corrupt("boolean block shorter than its count"));
    }
    Ok((0..n as usize)
        .map(|i| bits[i >> 3] & (128 >> (i & 7)) != 0)
        .collect())
}

/// Encodes strings.
pub fn encode_strings(vals: &[String]) -> Result<Vec<u8>, TsmError> {
    let mut raw = Vec::new();
    for s in vals {
        put_uvarint(&mut raw, s.len() as u64);
        raw.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![1 << 4];
    out.extend(
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .map_err(|e| TsmError::Encode(format!("snappy: {e}")))?,
    );
    Ok(out)
}

/// Decodes strings.
pub fn decode_strings(b: &[u8]) -> Result<Vec<String>, TsmError> {
    let Some(&head) = b.first() else {
        return Ok(Vec::new());
    };
    if head >> 4 != 1 {
        return Err(TsmError::corrupt(format!(
            "unknown string encoding {}",
            head >> 4
        )));
    }
    let len = snap::raw::decompress_len(&b[1..])
        .map_err(|e| TsmError::corrupt(format!("snappy: {e}")))?;
    if len > 256 << 20 {
        return Err(TsmError::corrupt("string block over 256 MiB"));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&b[1..])
        .map_err(|e| TsmError::corrupt(format!("snappy: {e}")))?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let (n, used) = uvarint(&raw[i..])?;
        i += used;
        let end = i
            .checked_add(n as usize)
            .filter(|e| *e <= raw.len())
            .ok_or_else(|| TsmError::corrupt("string runs past the block"))?;
        out.push(
            String::from_utf8(raw[i..end].to_vec())
                .map_err(|_| TsmError::corrupt("string is not UTF-8"))?,
        );
        i = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamp_encodings_are_chosen_as_influxdb_does() {
        // Equal deltas: run-length, scaled by 10^9.
        let ts: Vec<i64> = (0..100)
            .map(|i| 1_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let b = encode_timestamps(&ts).unwrap();
        assert_eq!(b[0], 0x2A); // RLE, 10^10
        assert_eq!(decode_timestamps(&b).unwrap(), ts);
        // Uneven deltas (10, 20, 960): packed, scaled by 10.
        let ts = vec![10, 20, 40, 1000];
        let b = encode_timestamps(&ts).unwrap();
        assert_eq!(b[0], 0x11);
        assert_eq!(decode_timestamps(&b).unwrap(), ts);
        // A delta past 60 bits: raw.
        let ts = vec![i64::MIN, 0, i64::MAX];
        let b = encode_timestamps(&ts).unwrap();
        assert_eq!(b[0] >> 4, RAW);
        assert_eq!(decode_timestamps(&b).unwrap(), ts);
        // One timestamp: packed with no words and scale 10^12.
        let b = encode_timestamps(&[7]).unwrap();
        assert_eq!((b[0], b.len()), (0x1C, 9));
        assert_eq!(decode_timestamps(&b).unwrap(), vec![7]);
    }

    #[test]
    fn integer_encodings_are_chosen_as_influxdb_does() {
        let b = encode_integers(&[5, 7, 9, 11]).unwrap();
        assert_eq!(b[0] >> 4, RLE);
        assert_eq!(decode_integers(&b).unwrap(), vec![5, 7, 9, 11]);
        let b = encode_integers(&[1, 2]).unwrap();
        assert_eq!(b[0] >> 4, PACKED);
        let b = encode_integers(&[0, i64::MAX, i64::MIN]).unwrap();
        assert_eq!(b[0] >> 4, RAW);
        assert_eq!(decode_integers(&b).unwrap(), vec![0, i64::MAX, i64::MIN]);
    }

    #[test]
    fn nan_is_refused_clearly() {
        let e = encode_floats(&[1.0, f64::NAN]).unwrap_err();
        assert!(e.to_string().contains("value 1 is NaN"), "{e}");
    }

    fn ascending() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            proptest::collection::btree_set(any::<i64>(), 1..300)
                .prop_map(|s| s.into_iter().collect()),
            (any::<i64>(), 1i64..1_000_000, 1usize..300).prop_map(|(s, d, n)| {
                (0..n as i64)
                    .map(|i| s.wrapping_div(2).saturating_add(i * d))
                    .collect()
            }),
            (0i64..1 << 30, proptest::collection::vec(1i64..10, 1..300)).prop_map(|(s, ds)| {
                ds.iter()
                    .scan(s * 1_000_000_000, |a, d| {
                        *a += d * 1_000_000_000;
                        Some(*a)
                    })
                    .collect()
            }),
        ]
    }

    proptest! {
        #[test]
        fn timestamps_round_trip(ts in ascending()) {
            prop_assert_eq!(decode_timestamps(&encode_timestamps(&ts).unwrap()).unwrap(), ts);
        }

        #[test]
        fn integers_round_trip(v in prop_oneof![
            proptest::collection::vec(any::<i64>(), 0..300),
            proptest::collection::vec(-5i64..5, 0..300),
            (any::<i64>(), any::<i64>(), 0usize..300).prop_map(|(s, d, n)| (0..n as i64).map(|i| s.wrapping_add(d.wrapping_mul(i))).collect()),
            proptest::collection::vec(prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(-1i64)], 0..50),
        ]) {
            prop_assert_eq!(decode_integers(&encode_integers(&v).unwrap()).unwrap(), v);
        }

        #[test]
        fn unsigned_round_trip_through_the_integer_codec(v in proptest::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64)], 0..300)) {
            let as_i: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            let back: Vec<u64> = decode_integers(&encode_integers(&as_i).unwrap()).unwrap().into_iter().map(|x| x as u64).collect();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn floats_round_trip_bit_exactly(v in proptest::collection::vec(prop_oneof![
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
            Just(f64::MAX), Just(f64::MIN), Just(f64::MIN_POSITIVE), Just(0.0), Just(-0.0),
            Just(f64::INFINITY), Just(f64::NEG_INFINITY), (0i32..100).prop_map(|i| i as f64 * 0.5),
        ], 0..300)) {
            let back = decode_floats(&encode_floats(&v).unwrap()).unwrap();
            prop_assert_eq!(back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn booleans_round_trip(v in proptest::collection::vec(any::<bool>(), 0..300)) {
            prop_assert_eq!(decode_booleans(&encode_booleans(&v)).unwrap(), v);
        }

        #[test]
        fn strings_round_trip(v in proptest::collection::vec("\\PC{0,40}", 0..100)) {
            prop_assert_eq!(decode_strings(&encode_strings(&v).unwrap()).unwrap(), v);
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_timestamps(&b);
            let _ = decode_integers(&b);
            let _ = decode_floats(&b);
            let _ = decode_booleans(&b);
            let _ = decode_strings(&b);
        }
    }
}
