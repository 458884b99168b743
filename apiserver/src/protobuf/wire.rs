//! Reading the protobuf wire format: varints, fixed-width numbers, length-delimited payloads.
//!
//! Every read is bounds-checked against the remaining input and reports a [`WireError`]
//! instead of panicking: the bytes come from an untrusted request body. Lengths are checked
//! against what is left before anything is sliced, so a huge declared length costs nothing.

/// How a field's value is laid out on the wire (the low three bits of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u64) -> Option<WireType> {
        Some(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }

    /// How error messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "64-bit",
            WireType::Len => "length-delimited",
            WireType::StartGroup => "start-group",
            WireType::EndGroup => "end-group",
            WireType::Fixed32 => "32-bit",
        }
    }
}

/// What went wrong reading the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unexpected end of data")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    VarintOverflow,
    #[error("invalid wire type {0}")]
    BadWireType(u64),
    #[error("invalid field number 0")]
    FieldZero,
    #[error("field number {0} is out of range")]
    FieldRange(u64),
    #[error("unbalanced group for field {0}")]
    UnbalancedGroup(u32),
    #[error("groups nested too deeply")]
    GroupTooDeep,
}

/// Groups are a deprecated proto2 feature no Kubernetes type uses; skipping an unknown one is
/// still supported (as gogo does), with nesting bounded so input cannot exhaust the stack.
const MAX_GROUP_DEPTH: usize = 32;

/// A cursor over one message's bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first().ok_or(WireError::Truncated)?;
            self.buf = rest;
            // The tenth byte may carry only the top bit of a u64; more is overflow.
            if i == 9 && byte > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow)
    }

    /// A field key: its number and wire type.
    pub fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = self.varint()?;
        let wire = WireType::from_bits(key & 7).ok_or(WireError::BadWireType(key & 7))?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        // Field numbers are at most 2^29 - 1.
        let number = u32::try_from(number)
            .ok()
            .filter(|n| *n < (1 << 29))
            .ok_or(WireError::FieldRange(number))?;
        Ok((number, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A length-delimited payload.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        // A length beyond what is left (or beyond usize) is truncation, not an allocation.
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        self.take(len)
    }

    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    /// Skip a value of a field the table does not know: upstream's decoder ignores unknown
    /// fields too, which is what lets a newer client talk to an older server.
    pub fn skip(&mut self, number: u32, wire: WireType) -> Result<(), WireError> {
        self.skip_depth(number, wire, 0)
    }

    fn skip_depth(&mut self, number: u32, wire: WireType, depth: usize) -> Result<(), WireError> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.fixed64().map(drop),
            WireType::Fixed32 => self.fixed32().map(drop),
            WireType::Len => self.bytes().map(drop),
            WireType::StartGroup => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(WireError::GroupTooDeep);
                }
                loop {
                    let (n, w) = self.key()?;
                    if w == WireType::EndGroup {
                        return if n == number {
                            Ok(())
                        } else {
                            Err(WireError::UnbalancedGroup(number))
                        };
                    }
                    self.skip_depth(n, w, depth + 1)?;
                }
            }
            WireType::EndGroup => Err(WireError::UnbalancedGroup(number)),
        }
    }
}

/// Protobuf encoding helpers for tests: they build bodies byte by byte the way gogo does.
#[cfg(test)]
pub mod enc {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn key(out: &mut Vec<u8>, number: u32, wire: u8) {
        varint(out, (u64::from(number) << 3) | u64::from(wire));
    }

    /// A length-delimited field.
    pub fn len(out: &mut Vec<u8>, number: u32, data: &[u8]) {
        key(out, number, 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }

    pub fn string(out: &mut Vec<u8>, number: u32, s: &str) {
        len(out, number, s.as_bytes());
    }

    /// A varint field (ints and bools; negative ints sign-extend to ten bytes, as in Go).
    pub fn int(out: &mut Vec<u8>, number: u32, v: i64) {
        key(out, number, 0);
        varint(out, v as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            enc::varint(&mut b, v);
            assert_eq!(Reader::new(&b).varint(), Ok(v));
        }
        assert_eq!(Reader::new(&[0x80]).varint(), Err(WireError::Truncated));
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(WireError::VarintOverflow)
        );
        // Ten bytes whose last carries more than the top bit.
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert_eq!(Reader::new(&b).varint(), Err(WireError::VarintOverflow));
    }

    #[test]
    fn lengths_beyond_the_input_are_truncation() {
        let mut b = Vec::new();
        enc::varint(&mut b, u64::MAX);
        assert_eq!(Reader::new(&b).bytes(), Err(WireError::Truncated));
        let mut b = Vec::new();
        enc::varint(&mut b, 5);
        b.extend_from_slice(b"abc");
        assert_eq!(Reader::new(&b).bytes(), Err(WireError::Truncated));
    }

    #[test]
    fn keys() {
        assert_eq!(Reader::new(&[0x08]).key(), Ok((1, WireType::Varint)));
        assert_eq!(Reader::new(&[0x12]).key(), Ok((2, WireType::Len)));
        assert_eq!(Reader::new(&[0x07]).key(), Err(WireError::BadWireType(7)));
        assert_eq!(Reader::new(&[0x02]).key(), Err(WireError::FieldZero));
    }

    #[test]
    fn skipping_groups() {
        // field 5 group { field 1 varint 3, field 6 group {} } then field 2 varint 1
        let b = [0x2b, 0x08, 0x03, 0x33, 0x34, 0x2c, 0x10, 0x01];
        let mut r = Reader::new(&b);
        let (n, w) = r.key().unwrap();
        r.skip(n, w).unwrap();
        assert_eq!(r.key(), Ok((2, WireType::Varint)));
        // An end-group for the wrong field.
        let mut r = Reader::new(&[0x2b, 0x34]);
        let (n, w) = r.key().unwrap();
        assert_eq!(r.skip(n, w), Err(WireError::UnbalancedGroup(5)));
        // Deep nesting is refused, not recursed into.
        let deep = vec![0x2b; 1000];
        let mut r = Reader::new(&deep);
        let (n, w) = r.key().unwrap();
        assert_eq!(r.skip(n, w), Err(WireError::GroupTooDeep));
    }
}
