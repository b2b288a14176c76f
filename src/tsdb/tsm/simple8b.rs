//! simple8b: packs runs of small unsigned integers into 64-bit words (a 4-bit
//! selector and 60 bits of payload), as InfluxDB's `pkg/encoding/simple8b`.
//! Value `j` of a word sits at bit `j × bits`. Selectors 0 and 1 encode runs of
//! 240 and 120 ones.

use super::TsmError;

/// The largest value simple8b can hold.
pub const MAX_VALUE: u64 = (1 << 60) - 1;

/// (values per word, bits per value) by selector.
const SELECTORS: [(usize, u32); 16] = [
    (240, 0),
    (120, 0),
    (60, 1),
    (30, 2),
    (20, 3),
    (15, 4),
    (12, 5),
    (10, 6),
    (8, 7),
    (7, 8),
    (6, 10),
    (5, 12),
    (4, 15),
    (3, 20),
    (2, 30),
    (1, 60),
];

fn can_pack(src: &[u64], n: usize, bits: u32) -> bool {
    if src.len() < n {
        return false;
    }
    if bits == 0 {
        return src[..n].iter().all(|&v| v == 1);
    }
    let max = (1u64 << bits) - 1;
    src[..n].iter().all(|&v| v <= max)
}

/// Encodes every value (each at most [`MAX_VALUE`]) into words.
pub fn encode_all(src: &[u64]) -> Result<Vec<u64>, TsmError> {
    let mut out = Vec::with_capacity(src.len() / 4 + 1);
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        let Some((sel, &(n, bits))) = SELECTORS
            .iter()
            .enumerate()
            .find(|(_, (n, b))| can_pack(rest, *n, *b))
        else {
            return Err(TsmError::Encode(format!(
                "value {} exceeds simple8b's 60 bits",
                rest[0]
            )));
        };
        let mut w = (sel as u64) << 60;
        if bits > 0 {
            for (j, &v) in rest[..n].iter().enumerate() {
                w |= v << (j as u32 * bits);
            }
        }
        out.push(w);
        i += n;
    }
    Ok(out)
}

/// Decodes words, appending to `out`; refuses to grow `out` past `limit`.
pub fn decode_all(
    words: impl Iterator<Item = u64>,
    out: &mut Vec<u64>,
    limit: usize,
) -> Result<(), TsmError> {
    for w in words {
        let (n, bits) = SELECTORS[(w >> 60) as usize];
        if out.len() + n > limit {
            return Err(TsmError::corrupt(format!(
                "simple8b data decodes to more than {limit} values"
            )));
        }
        if bits == 0 {
            out.extend(std::iter::repeat_n(1, n));
        } else {
            let mask = (1u64 << bits) - 1;
            out.extend((0..n).map(|j| (w >> (j as u32 * bits)) & mask));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_pick_the_densest_packing() {
        assert_eq!(encode_all(&[1; 240]).unwrap(), vec![0]);
        assert_eq!(encode_all(&[1; 120]).unwrap(), vec![1 << 60]);
        let w = encode_all(&[0, 1, 0, 1]).unwrap();
        // Four values that fit one bit but fewer than 60: 4 × 15 bits.
        assert_eq!(w, vec![(12u64 << 60) | (1 << 15) | (1 << 45)]);
        let mut out = Vec::new();
        decode_all(w.into_iter(), &mut out, 100).unwrap();
        assert_eq!(out, vec![0, 1, 0, 1]);
        assert!(encode_all(&[MAX_VALUE + 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn round_trips(v in proptest::collection::vec(proptest::prop_oneof![0u64..4, 0u64..1000, 0..=MAX_VALUE, proptest::strategy::Just(1u64)], 0..600)) {
            let words = encode_all(&v).unwrap();
            let mut out = Vec::new();
            decode_all(words.into_iter(), &mut out, usize::MAX).unwrap();
            proptest::prop_assert_eq!(out, v);
        }
    }
}
