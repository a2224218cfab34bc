//! LwM2M's TLV content format (OMA LwM2M 1.0, section 6.4.3), the binary format every 1.0
//! client must speak: what the front writes to devices at bootstrap, and what fleetsim's
//! devices read and write (one codec on both sides).
//!
//! An entry is a type byte (what the identifier names, the identifier's length, how the
//! length is given), the identifier, the length and the value. Decoding never panics: bytes
//! that do not parse give `None`.

/// Its CoAP content-format number (application/vnd.oma.lwm2m+tlv).
pub const CONTENT_FORMAT: u16 = 11542;

/// What an entry's identifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An object instance: its value is resource entries.
    ObjectInstance,
    /// One instance of a multiple resource.
    ResourceInstance,
    /// A multiple resource: its value is resource-instance entries.
    MultipleResource,
    /// A resource with its value.
    Resource,
}

impl Kind {
    fn bits(self) -> u8 {
        match self {
            Self::ObjectInstance => 0b00,
            Self::ResourceInstance => 0b01,
            Self::MultipleResource => 0b10,
            Self::Resource => 0b11,
        }
    }

    fn of(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Self::ObjectInstance,
            0b01 => Self::ResourceInstance,
            0b10 => Self::MultipleResource,
            _ => Self::Resource,
        }
    }
}

/// One decoded entry, borrowing its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// What the identifier names.
    pub kind: Kind,
    /// The identifier.
    pub id: u16,
    /// The value (entries again for an object instance or a multiple resource).
    pub value: &'a [u8],
}

/// Writes one entry to `out`.
pub fn write(out: &mut Vec<u8>, kind: Kind, id: u16, value: &[u8]) {
    let long_id = id > 0xFF;
    let len = value.len();
    let (len_kind, len_bytes): (u8, &[u8]) = match len {
        0..=7 => (0, &[]),
        8..=0xFF => (1, &(len as u32).to_be_bytes()[3..]),
        0x100..=0xFFFF => (2, &(len as u32).to_be_bytes()[2..]),
        _ => (3, &(len as u32).to_be_bytes()[1..]),
    };
    let small_len = if len_kind == 0 { len as u8 } else { 0 };
    out.push(kind.bits() << 6 | u8::from(long_id) << 5 | len_kind << 3 | small_len);
    if long_id {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    out.extend_from_slice(len_bytes);
    out.extend_from_slice(value);
}

/// An integer's value: the fewest of 1, 2, 4 or 8 big-endian bytes.
pub fn int_bytes(v: i64) -> Vec<u8> {
    if let Ok(v) = i8::try_from(v) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i16::try_from(v) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i32::try_from(v) {
        v.to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}

/// The integer an entry's value holds (1, 2, 4 or 8 big-endian bytes).
pub fn integer(value: &[u8]) -> Option<i64> {
    match value.len() {
        1 => Some(i64::from(i8::from_be_bytes(value.try_into().ok()?))),
        2 => Some(i64::from(i16::from_be_bytes(value.try_into().ok()?))),
        4 => Some(i64::from(i32::from_be_bytes(value.try_into().ok()?))),
        8 => Some(i64::from_be_bytes(value.try_into().ok()?)),
        _ => None,
    }
}

/// The boolean an entry's value holds (one byte, 0 or 1).
pub fn boolean(value: &[u8]) -> Option<bool> {
    match value {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// The first entry of `bytes` and what follows it.
pub fn next(bytes: &[u8]) -> Option<(Entry<'_>, &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let (id, rest) = if kind & 0b10_0000 != 0 {
        let id = rest.get(..2)?;
        (u16::from_be_bytes([id[0], id[1]]), &rest[2..])
    } else {
        (u16::from(*rest.first()?), &rest[1..])
    };
    let (len, rest) = match (kind >> 3) & 0b11 {
        0 => (usize::from(kind & 0b111), rest),
        n => {
            let n = usize::from(n);
            let len = rest.get(..n)?.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, &rest[n..])
        }
    };
    let entry = Entry {
        kind: Kind::of(kind >> 6),
        id,
        value: rest.get(..len)?,
    };
    Some((entry, &rest[len..]))
}

/// Every entry at the top level of `bytes`; `None` if any does not parse.
pub fn entries(mut bytes: &[u8]) -> Option<Vec<Entry<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (entry, rest) = next(bytes)?;
        out.push(entry);
        bytes = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LwM2M 1.0, section 6.4.3.1's example: /3/0's manufacturer, a 2-byte-length string.
    #[test]
    fn entries_round_trip_with_every_length_and_identifier_size() {
        let long = vec![7u8; 300];
        let mut out = Vec::new();
        write(&mut out, Kind::Resource, 0, b"Open Mobile Alliance");
        write(&mut out, Kind::Resource, 5700, &int_bytes(-3));
        write(&mut out, Kind::Resource, 9, &long);
        write(&mut out, Kind::Resource, 1, &[1]);
        assert_eq!(&out[..2], &[0b1100_1000, 0x00], "a one-byte length after a one-byte id");
        let read = entries(&out).expect("parses");
        assert_eq!(read.len(), 4);
        assert_eq!(
            (read[0].kind, read[0].id, read[0].value),
            (Kind::Resource, 0, &b"Open Mobile Alliance"[..])
        );
        assert_eq!((read[1].id, integer(read[1].value)), (5700, Some(-3)));
        assert_eq!((read[2].id, read[2].value.len()), (9, 300));
        assert_eq!(boolean(read[3].value), Some(true));
    }

    #[test]
    fn integers_take_the_fewest_bytes_and_read_back() {
        for v in [0, -1, 127, 128, -32_768, 70_000, i64::from(i32::MIN), i64::MAX] {
            let bytes = int_bytes(v);
            assert_eq!(integer(&bytes), Some(v), "{v}");
        }
        assert_eq!(int_bytes(100).len(), 1);
        assert_eq!(int_bytes(1000).len(), 2);
        assert_eq!(integer(&[1, 2, 3]), None, "three bytes is no integer");
    }

    #[test]
    fn object_instances_nest_and_truncation_is_refused() {
        let mut inner = Vec::new();
        write(&mut inner, Kind::Resource, 0, b"coap://127.0.0.1:5683");
        let mut out = Vec::new();
        write(&mut out, Kind::ObjectInstance, 1, &inner);
        let [instance] = entries(&out).expect("parses")[..] else {
            panic!("one instance");
        };
        assert_eq!((instance.kind, instance.id), (Kind::ObjectInstance, 1));
        assert_eq!(
            entries(instance.value).expect("parses")[0].value,
            b"coap://127.0.0.1:5683"
        );
        for cut in 1..out.len() {
            assert!(entries(&out[..cut]).is_none(), "cut at {cut}");
        }
        assert!(next(&[]).is_none());
    }
}
