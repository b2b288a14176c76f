//! InfluxDB 1.x TSM files: a writer and a reader.
//!
//! Layout: header `0x16D116D1` + version 1; blocks, each a CRC32-IEEE of its
//! data then the data (`u8 type | uvarint len(timestamps) | timestamps |
//! values`); the index, sorted by key (`u16 key len | key | u8 type | u16
//! count | count × (i64 min, i64 max, u64 offset, u32 size)`, where offset
//! points at the CRC and size includes it); a footer with the index offset.
//! Keys are `<series key>#!~#<field>`; at most 1000 points per block.
//! Deletes are kept beside a file as its tombstone file ([`tombstone`]).

mod bits;
pub mod encoding;
pub mod file;
pub mod simple8b;
pub mod tombstone;

pub use file::{IndexEntry, TsmReader, TsmWriter, WrittenFile};
pub use tombstone::Tombstones;

/// Points per block, as InfluxDB writes them.
pub const MAX_POINTS_PER_BLOCK: usize = 1000;
/// Separates the series key from the field name in a TSM key.
pub const KEY_FIELD_SEPARATOR: &str = "#!~#";

/// A key's series and field, split at its last [`KEY_FIELD_SEPARATOR`]
/// (the field `""` when it has none). Searched from the end, where the
/// short field name is.
pub fn split_key(key: &str) -> (&str, &str) {
    let sep = KEY_FIELD_SEPARATOR.as_bytes();
    let b = key.as_bytes();
    let mut end = b.len();
    while end >= sep.len() {
        let start = end - sep.len();
        if &b[start..end] == sep
            && let (Some(series), Some(field)) = (key.get(..start), key.get(end..))
        {
            return (series, field);
        }
        end -= 1;
    }
    (key, "")
}

/// An error reading or writing TSM data.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    /// Values that cannot be encoded (NaN, unsorted timestamps, …).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// Bytes that do not decode.
    #[error("corrupt TSM data: {0}")]
    Corrupt(String),
    /// A file-level problem, naming the file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// I/O.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl TsmError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        TsmError::Corrupt(reason.into())
    }
}

/// Block type bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockType {
    /// 64-bit floats.
    Float = 0,
    /// Signed integers.
    Integer = 1,
    /// Booleans.
    Boolean = 2,
    /// Strings.
    String = 3,
    /// Unsigned integers.
    Unsigned = 4,
}

impl BlockType {
    /// InfluxDB's name of the type (`float`, `integer`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            BlockType::Float => "float",
            BlockType::Integer => "integer",
            BlockType::Boolean => "boolean",
            BlockType::String => "string",
            BlockType::Unsigned => "unsigned",
        }
    }

    /// From the type byte.
    pub fn from_u8(b: u8) -> Result<Self, TsmError> {
        Ok(match b {
            0 => BlockType::Float,
            1 => BlockType::Integer,
            2 => BlockType::Boolean,
            3 => BlockType::String,
            4 => BlockType::Unsigned,
            t => return Err(TsmError::corrupt(format!("unknown block type {t}"))),
        })
    }
}

/// A column of values of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Floats.
    Float(Vec<f64>),
    /// Signed integers.
    Integer(Vec<i64>),
    /// Unsigned integers.
    Unsigned(Vec<u64>),
    /// Booleans.
    Boolean(Vec<bool>),
    /// Strings.
    String(Vec<String>),
}

impl Values {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Integer(v) => v.len(),
            Values::Unsigned(v) => v.len(),
            Values::Boolean(v) => v.len(),
            Values::String(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block type of these values.
    pub fn block_type(&self) -> BlockType {
        match self {
            Values::Float(_) => BlockType::Float,
            Values::Integer(_) => BlockType::Integer,
            Values::Unsigned(_) => BlockType::Unsigned,
            Values::Boolean(_) => BlockType::Boolean,
            Values::String(_) => BlockType::String,
        }
    }

    /// Values `range` as a new column.
    pub fn slice(&self, r: std::ops::Range<usize>) -> Values {
        match self {
            Values::Float(v) => Values::Float(v[r].to_vec()),
            Values::Integer(v) => Values::Integer(v[r].to_vec()),
            Values::Unsigned(v) => Values::Unsigned(v[r].to_vec()),
            Values::Boolean(v) => Values::Boolean(v[r].to_vec()),
            Values::String(v) => Values::String(v[r].to_vec()),
        }
    }

    /// Keeps the values whose `keep` is true (`keep` has one per value).
    pub fn retain_marked(&mut self, keep: &[bool]) {
        fn cut<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep.get(i - 1).copied().unwrap_or(true)
            });
        }
        match self {
            Values::Float(v) => cut(v, keep),
            Values::Integer(v) => cut(v, keep),
            Values::Unsigned(v) => cut(v, keep),
            Values::Boolean(v) => cut(v, keep),
            Values::String(v) => cut(v, keep),
        }
    }

    /// Appends `other` (same type) to these values.
    pub fn extend(&mut self, other: Values) -> Result<(), TsmError> {
        match (self, other) {
            (Values::Float(a), Values::Float(b)) => a.extend(b),
            (Values::Integer(a), Values::Integer(b)) => a.extend(b),
            (Values::Unsigned(a), Values::Unsigned(b)) => a.extend(b),
            (Values::Boolean(a), Values::Boolean(b)) => a.extend(b),
            (Values::String(a), Values::String(b)) => a.extend(b),
            _ => return Err(TsmError::corrupt("blocks of one key have different types")),
        }
        Ok(())
    }
}

/// Encodes one block of ascending, distinct timestamps and their values.
pub fn encode_block(ts: &[i64], values: &Values) -> Result<Vec<u8>, TsmError> {
    if ts.is_empty() || ts.len() != values.len() {
        return Err(TsmError::Encode(format!(
            "a block needs as many values ({}) as timestamps ({}), at least one",
            values.len(),
            ts.len()
        )));
    }
    if ts.windows(2).any(|w| w[0] >= w[1]) {
        return Err(TsmError::Encode(
            "timestamps must be ascending and distinct".into(),
        ));
    }
    let tb = encoding::encode_timestamps(ts)?;
    let vb = match values {
        Values::Float(v) => encoding::encode_floats(v)?,
        Values::Integer(v) => encoding::encode_integers(v)?,
        Values::Unsigned(v) => {
            encoding::encode_integers(&v.iter().map(|&x| x as i64).collect::<Vec<_>>())?
        }
        Values::Boolean(v) => encoding::encode_booleans(v),
        Values::String(v) => encoding::encode_strings(v)?,
    };
    let mut out = Vec::with_capacity(tb.len() + vb.len() + 11);
    out.push(values.block_type() as u8);
    encoding::append_uvarint(&mut out, tb.len() as u64);
    out.extend(tb);
    out.extend(vb);
    Ok(out)
}

/// Decodes one block into its timestamps and values.
pub fn decode_block(b: &[u8]) -> Result<(Vec<i64>, Values), TsmError> {
    let typ = BlockType::from_u8(*b.first().ok_or_else(|| TsmError::corrupt("empty block"))?)?;
    let (tlen, used) = encoding::uvarint(&b[1..])?;
    let start = 1 + used;
    let end = start
        .checked_add(usize::try_from(tlen).map_err(|_| TsmError::corrupt("timestamp length"))?)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| TsmError::corrupt("timestamps run past the block"))?;
    let ts = encoding::decode_timestamps(&b[start..end])?;
    let vb = &b[end..];
    let values = match typ {
        BlockType::Float => Values::Float(encoding::decode_floats(vb)?),
        BlockType::Integer => Values::Integer(encoding::decode_integers(vb)?),
        BlockType::Unsigned => Values::Unsigned(
            encoding::decode_integers(vb)?
                .into_iter()
                .map(|x| x as u64)
                .collect(),
        ),
        BlockType::Boolean => Values::Boolean(encoding::decode_booleans(vb)?),
        BlockType::String => Values::String(encoding::decode_strings(vb)?),
    };
    if values.len() != ts.len() {
        return Err(TsmError::corrupt(format!(
            "block has {} timestamps but {} values",
            ts.len(),
            values.len()
        )));
    }
    Ok((ts, values))
}
