//! MSB-first bit streams for the Gorilla float encoding.

use super::TsmError;

/// Writes bits most-significant first.
#[derive(Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    used: u32,
}

impl BitWriter {
    /// Writes the low `n` bits of `v` (n ≤ 64), most significant first.
    pub fn write(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            if self.used == 0 {
                self.buf.push(0);
            }
            if (v >> i) & 1 == 1 {
                let last = self.buf.len() - 1;
                self.buf[last] |= 0x80 >> self.used;
            }
            self.used = (self.used + 1) % 8;
        }
    }

    /// The bytes, the last one padded with zero bits.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads bits most-significant first.
pub struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Reads `n` bits (n ≤ 64).
    pub fn read(&mut self, n: u32) -> Result<u64, TsmError> {
        if n == 0 {
            return Ok(0);
        }
        if n > 64 || self.pos + n as usize > self.buf.len() * 8 {
            return Err(TsmError::corrupt("float block ends mid-value"));
        }
        let (at, off) = (self.pos / 8, (self.pos % 8) as u32);
        // Sixteen bytes from the current one hold any 64 bits from it.
        if let Some(window) = self.buf.get(at..at + 16) {
            let mut w = [0u8; 16];
            w.copy_from_slice(window);
            let v = ((u128::from_be_bytes(w) << off) >> (128 - n)) as u64;
            self.pos += n as usize;
            return Ok(v);
        }
        // Near the end: byte by byte.
        let mut v = 0u64;
        let mut need = n;
        while need > 0 {
            let off = (self.pos % 8) as u32;
            let take = (8 - off).min(need);
            let byte = u64::from(self.buf[self.pos / 8]);
            let bits = (byte >> (8 - off - take)) & ((1u64 << take) - 1);
            v = (v << take) | bits;
            self.pos += take as usize;
            need -= take;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_read_back_as_written_at_every_offset_and_width() {
        let mut w = BitWriter::default();
        let mut wrote = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..400u32 {
            let n = i % 65;
            x = x.rotate_left(7) ^ u64::from(i);
            let v = if n == 64 { x } else { x & ((1u64 << n) - 1) };
            w.write(v, n);
            wrote.push((v, n));
        }
        let buf = w.finish();
        let mut r = BitReader::new(&buf);
        for (v, n) in wrote {
            assert_eq!(r.read(n).ok(), Some(v), "{n} bits");
        }
        assert!(r.read(64).is_err());
    }
}
