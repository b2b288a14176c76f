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
        if self.pos + n as usize > self.buf.len() * 8 {
            return Err(TsmError::corrupt("float block ends mid-value"));
        }
        let mut v = 0u64;
        for _ in 0..n {
            let bit = (self.buf[self.pos / 8] >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u64::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }
}
