//! Checked reading and writing of the routing wire format: varints, keys, signatures.
//!
//! Every read checks the length first and returns [`DecodeError`] instead of panicking, so any
//! byte string from the network can be handed to a parser.

/// A 32-byte ed25519 public key.
pub type Key = [u8; 32];
/// A 64-byte ed25519 signature.
pub type Sig = [u8; 64];

/// Why bytes could not be decoded. Always the sender's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended early.
    #[error("message truncated")]
    Truncated,
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("bad varint")]
    Varint,
    /// A count or length beyond what the protocol allows.
    #[error("too many elements")]
    TooMany,
    /// A type byte this version does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field outside its allowed range.
    #[error("field out of range")]
    Invalid,
    /// Bytes left over after a complete message.
    #[error("trailing bytes")]
    Trailing,
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` at its beginning.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let b = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        // Most varints (coordinates, counts, lengths) are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(b as u64);
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let part = (b & 0x7f) as u64;
            if i == 9 && b > 1 {
                return Err(DecodeError::Varint);
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                // Only the shortest encoding is accepted: one byte string per value.
                if i > 0 && b == 0 {
                    return Err(DecodeError::Varint);
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Varint)
    }

    /// A varint count, at most `max`.
    pub fn count(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(DecodeError::TooMany);
        }
        Ok(n as usize)
    }
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Length of `v` as a varint.
pub fn varint_len(v: u64) -> usize {
    (((64 - v.max(1).leading_zeros()) as usize).div_ceil(7)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip_and_reject_garbage() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&b);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.finish(), Ok(()));
        }
        assert_eq!(Reader::new(&[0x80; 11]).varint(), Err(DecodeError::Varint));
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(),
            Err(DecodeError::Varint),
            "non-minimal"
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(DecodeError::Truncated));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(Reader::new(&over).varint(), Err(DecodeError::Varint));
    }
}
