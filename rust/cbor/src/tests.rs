//! The check, the reader and the writer against hand-made corner cases and
//! against `ciborium` (the reference decoder/encoder of the host side).

use super::*;
use alloc::vec;
use alloc::vec::Vec;
use ciborium::value::Value;

fn ok(b: &[u8]) -> bool {
    check_wellformed(b, 16).is_ok()
}

#[test]
fn accepts_well_formed_items() {
    assert!(ok(&[0x00]));
    assert!(ok(&[0x3a, 0x00, 0x01, 0x00, 0x00])); // -65537
    assert!(ok(&[0x1b, 1, 2, 3, 4, 5, 6, 7, 8]));
    assert!(ok(&[0x43, 1, 2, 3]));
    assert!(ok(&[0x63, b'a', b'b', b'c']));
    assert!(ok(&[0x82, 0x01, 0x80])); // [1, []]
    assert!(ok(&[0xa1, 0x01, 0xa0])); // {1: {}}
    assert!(ok(&[0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40])); // 18([h'', {}, nil, h''])
    assert!(ok(&[0x9f, 0x01, 0x02, 0xff])); // [_ 1, 2]
    assert!(ok(&[0xbf, 0x01, 0x02, 0xff])); // {_ 1: 2}
    assert!(ok(&[0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff])); // (_ h'01', h'0203')
    assert!(ok(&[0x9f, 0x9f, 0xff, 0xff])); // [_ [_ ]]
    assert!(ok(&[0xf9, 0x3c, 0x00])); // 1.0 half
    assert!(ok(&[0xf8, 0x20])); // simple(32)
}

#[test]
fn refuses_malformed_items() {
    for bad in [
        &[][..],
        &[0x00, 0x00],                                           // trailing
        &[0x18],                                                 // truncated argument
        &[0x43, 1, 2],                                           // truncated bstr
        &[0x82, 0x01],                                           // truncated array
        &[0xa1, 0x01],                                           // map missing value
        &[0x1c],                                                 // reserved additional info
        &[0xff],                                                 // stray break
        &[0x9f, 0x01],                                           // unterminated indefinite array
        &[0x5f, 0x61, b'a', 0xff],                               // text chunk in byte string
        &[0x5f, 0x5f, 0xff, 0xff],                               // nested indefinite chunk
        &[0x1f],                                                 // indefinite uint
        &[0xdf, 0x00],                                           // indefinite tag
        &[0xf8, 0x10],                                           // simple < 32 in 1-byte form
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // length > input
        &[0xa2, 0x01, 0x02, 0x03],                               // map count > input / 2
        &[0x82, 0xff, 0x00],                                     // break in a definite array
        &[0xbf, 0x41, 0x2e, 0xff],                               // {_ h'2e' }: key without value
        &[0x62, 0xc3, 0x28],                                     // text that is not UTF-8
        &[0x7f, 0x61, 0xc3, 0x61, 0xa9, 0xff],                   // a UTF-8 character split over chunks
    ] {
        assert!(!ok(bad), "{bad:02x?}");
    }
}

#[test]
fn depth_limit() {
    let mut v = vec![0x81u8; 4];
    v.push(0x00);
    assert!(check_wellformed(&v, 4).is_ok());
    assert!(check_wellformed(&v, 3).is_err());
    let mut tags = vec![0xc0u8; 5];
    tags.push(0x00);
    assert!(check_wellformed(&tags, 5).is_ok());
    assert!(check_wellformed(&tags, 4).is_err());
    // An empty container is a level too: [[[]]] is 3 deep.
    assert!(check_wellformed(&[0x81, 0x81, 0x80], 3).is_ok());
    assert!(check_wellformed(&[0x81, 0x81, 0x80], 2).is_err());
    assert!(check_wellformed(&[0xa0], 0).is_err());
    // The cap: 17 levels are refused whatever the caller asks.
    let mut deep = vec![0x81u8; 17];
    deep.push(0x00);
    assert!(check_wellformed(&deep, 100).is_err());
}

/// A small deterministic generator (xorshift) for the differential tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random bytes biased towards CBOR heads: most are malformed, some not.
fn random_cbor(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(24) as usize;
    (0..len)
        .map(|_| match rng.below(4) {
            0 => [0x00, 0x18, 0x20, 0x41, 0x61, 0x80, 0x81, 0xa0, 0xa1, 0xbf, 0x9f, 0x5f, 0x7f, 0xff, 0xc1, 0xf5][rng.below(16) as usize],
            _ => rng.next() as u8,
        })
        .collect()
}

#[test]
fn the_check_agrees_with_ciborium() {
    // Everything ciborium decodes as exactly one item (within the depth
    // limit, which ciborium does not have) is accepted, and what we accept
    // ciborium decodes. Floats and simple values are fine for both.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut agreed = 0;
    for _ in 0..200_000 {
        let b = random_cbor(&mut rng);
        let mut rest = &b[..];
        let theirs = ciborium::de::from_reader::<Value, _>(&mut rest).is_ok() && rest.is_empty();
        // Where the rules differ, skip: ciborium refuses unassigned simple
        // values (well-formed for RFC 8949) and accepts a 1-byte simple
        // value < 32 (not well-formed).
        let has_simple = b.iter().any(|x| (0xe0..=0xf3).contains(x) || *x == 0xf8);
        if has_simple {
            continue;
        }
        assert_eq!(ok(&b), theirs, "{b:02x?}");
        agreed += 1;
    }
    assert!(agreed > 10_000, "{agreed}");
}

#[test]
fn the_writer_matches_ciborium_and_is_minimal() {
    let ints = [0i64, 1, 23, 24, 255, 256, 65_535, 65_536, 0xFFFF_FFFF, 0x1_0000_0000, i64::MAX, -1, -24, -25, -256, -257, -65_537, i64::MIN];
    for v in ints {
        let mut e = Enc::new();
        e.int(v);
        let mut theirs = Vec::new();
        ciborium::ser::into_writer(&Value::from(v), &mut theirs).unwrap();
        assert_eq!(e.finish(), theirs, "{v}");
    }
    for len in [0usize, 23, 24, 255, 256, 65_536] {
        let b = vec![7u8; len];
        let t: alloc::string::String = "x".repeat(len);
        let mut e = Enc::new();
        e.array(3).bytes(&b).text(&t).map(1).uint(1).tag(18).bool(true);
        let v = Value::Array(vec![
            Value::Bytes(b.clone()),
            Value::Text(t.clone()),
            Value::Map(vec![(Value::from(1), Value::Tag(18, Box::new(Value::Bool(true))))]),
        ]);
        let mut theirs = Vec::new();
        ciborium::ser::into_writer(&v, &mut theirs).unwrap();
        assert_eq!(e.finish(), theirs, "{len}");
    }
}

fn body(f: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let mut e = Enc::new();
    f(&mut e);
    e.finish()
}

#[test]
fn the_reader_reads_typed_fields_and_skips_the_rest() {
    let b = body(|e| {
        e.map(7);
        e.text("id").uint(70_000);
        e.int(5).array(2).map(1).text("deep").array(0).null(); // non-text key, nested value
        e.text("pub").bytes(&[1, 2, 3]);
        e.text("cn").text("dev-1");
        e.text("replace").bool(true);
        e.text("other").tag(1).uint(9);
        e.text("").uint(0);
    });
    let mut r = MapReader::new(&b, 8).unwrap();
    let (mut id, mut public, mut cn, mut replace, mut skipped) = (None, None, None, None, 0);
    while let Some(k) = r.next_key().unwrap() {
        match &*k {
            "id" => MapReader::set(&mut id, r.uint("id").unwrap(), "id").unwrap(),
            "pub" => MapReader::set(&mut public, r.bytes("pub").unwrap(), "pub").unwrap(),
            "cn" => MapReader::set(&mut cn, r.text("cn").unwrap(), "cn").unwrap(),
            "replace" => MapReader::set(&mut replace, r.bool("replace").unwrap(), "replace").unwrap(),
            _ => {
                r.skip().unwrap();
                skipped += 1;
            }
        }
    }
    assert_eq!(id, Some(70_000));
    assert_eq!(public.as_deref(), Some(&[1u8, 2, 3][..]));
    assert_eq!(cn.as_deref(), Some("dev-1"));
    assert_eq!(replace, Some(true));
    assert_eq!(skipped, 3);
}

#[test]
fn the_reader_takes_indefinite_maps_and_strings() {
    // {_ "id": 3, (_ "c", "n"): (_ "ab", "c"), "cert": (_ h'01', h'0203')}
    let b = [
        0xbf, 0x62, b'i', b'd', 0x03, 0x7f, 0x61, b'c', 0x61, b'n', 0xff, 0x7f, 0x62, b'a', b'b', 0x61, b'c', 0xff,
        0x64, b'c', b'e', b'r', b't', 0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff, 0xff,
    ];
    let mut r = MapReader::new(&b, 8).unwrap();
    assert_eq!(r.next_key().unwrap().as_deref(), Some("id"));
    assert_eq!(r.uint("id").unwrap(), 3);
    assert_eq!(r.next_key().unwrap().as_deref(), Some("cn"));
    assert_eq!(r.text("cn").unwrap(), "abc");
    assert_eq!(r.next_key().unwrap().as_deref(), Some("cert"));
    assert_eq!(r.bytes("cert").unwrap(), [1, 2, 3]);
    assert_eq!(r.next_key().unwrap(), None);
}

#[test]
fn the_reader_refuses_what_it_must() {
    let not_map = body(|e| {
        e.array(0);
    });
    assert_eq!(MapReader::new(&not_map, 8).unwrap_err(), Error::NotAMap);
    assert_eq!(MapReader::new(&[0xa1, 0x01], 8).unwrap_err(), Error::Malformed);
    let b = body(|e| {
        e.map(4).text("a").int(-1).text("b").bytes(&[1]).text("c").text("x").text("d").uint(1);
    });
    let mut r = MapReader::new(&b, 8).unwrap();
    r.next_key().unwrap();
    assert_eq!(r.uint("a"), Err(Error::WrongType("a")), "a negative integer is not a uint");
    r.skip().unwrap();
    r.next_key().unwrap();
    assert_eq!(r.text("b"), Err(Error::WrongType("b")), "a bstr is not a tstr");
    r.skip().unwrap();
    r.next_key().unwrap();
    assert_eq!(r.bytes("c"), Err(Error::WrongType("c")), "a tstr is not a bstr");
    r.skip().unwrap();
    r.next_key().unwrap();
    assert_eq!(r.bool("d"), Err(Error::WrongType("d")), "1 is not a bool");
    // Invalid UTF-8 in a value or a key (even one nobody reads) is not
    // well-formed for the check.
    assert_eq!(MapReader::new(&[0xa1, 0x61, b'k', 0x62, 0xc3, 0x28], 8).unwrap_err(), Error::Malformed);
    assert_eq!(MapReader::new(&[0xa1, 0x62, 0xc3, 0x28, 0x00], 8).unwrap_err(), Error::Malformed);
    // Duplicates through set.
    let mut slot = Some(1);
    assert_eq!(MapReader::set(&mut slot, 2, "id"), Err(Error::Duplicate("id")));
}

#[test]
fn random_input_never_panics_and_reads_agree_with_ciborium() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..100_000 {
        let mut b = random_cbor(&mut rng);
        if rng.below(2) == 0 {
            b.insert(0, 0xa0 + rng.below(4) as u8);
        }
        let Ok(mut r) = MapReader::new(&b, 8) else { continue };
        let theirs: Value = ciborium::de::from_reader(&b[..]).unwrap_or(Value::Null);
        let mut texts = 0;
        while let Ok(Some(k)) = r.next_key() {
            if !k.is_empty() {
                texts += 1;
            }
            let read = r.uint("v").is_ok() || r.bytes("v").is_ok() || r.text("v").is_ok() || r.bool("v").is_ok();
            if !read && r.skip().is_err() {
                break;
            }
        }
        if let Value::Map(entries) = theirs {
            let theirs_texts = entries.iter().filter(|(k, _)| matches!(k, Value::Text(t) if !t.is_empty())).count();
            assert_eq!(texts, theirs_texts, "{b:02x?}");
        }
    }
}

#[test]
fn the_cursor_reads_a_fixed_structure() {
    // 18([h'a10126', {4: h'0102', "x": 1, -1: {1: 2}}, null, h'ff'])
    let mut e = Enc::new();
    e.tag(18).array(4).bytes(&[0xa1, 0x01, 0x26]);
    e.map(3).int(4).bytes(&[1, 2]).text("x").uint(1).int(-1).map(1).uint(1).uint(2);
    e.null().bytes(&[0xff]);
    let buf = e.finish();
    let mut c = Cursor::new(&buf, 8).unwrap();
    assert_eq!(c.tag(), Ok(Some(18)));
    assert_eq!(c.tag(), Ok(None), "not tagged twice");
    assert_eq!(c.array("a"), Ok(4));
    assert_eq!(c.bytes("p"), Ok(&[0xa1, 0x01, 0x26][..]));
    assert_eq!(c.map("u"), Ok(3));
    assert_eq!(c.label(), Ok(Label::Int(4)));
    assert_eq!(c.bytes("kid"), Ok(&[1, 2][..]));
    assert_eq!(c.label(), Ok(Label::Other(&[0x61, b'x'][..])));
    assert_eq!(c.int("x"), Ok(1));
    assert_eq!(c.label(), Ok(Label::Int(-1)));
    assert_eq!(c.raw(), Ok(&[0xa1, 0x01, 0x02][..]));
    assert!(!c.at_end());
    assert!(c.null());
    assert!(!c.null(), "a bstr is not null");
    assert_eq!(c.int("sig"), Err(Error::WrongType("sig")), "a bstr is not an int");
    assert_eq!(c.bytes("sig"), Ok(&[0xff][..]));
    assert!(c.at_end());
    assert_eq!(c.skip(), Err(Error::Malformed), "nothing left");
}

#[test]
fn the_cursor_refuses_what_it_must() {
    // Not one well-formed item.
    assert!(Cursor::new(&[0x82, 0x01], 8).is_err());
    assert!(Cursor::new(&[0x01, 0x02], 8).is_err());
    // Indefinite lengths are not definite arrays, maps or strings.
    for (buf, what) in [(&[0x9f, 0xff][..], "array"), (&[0xbf, 0xff][..], "map"), (&[0x5f, 0xff][..], "bytes")] {
        let mut c = Cursor::new(buf, 8).unwrap();
        let r = match what {
            "array" => c.array("x").map(drop),
            "map" => c.map("x").map(drop),
            _ => c.bytes("x").map(drop),
        };
        assert_eq!(r, Err(Error::WrongType("x")), "{what}");
    }
    // Integers outside i64.
    let mut c = Cursor::new(&[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 8).unwrap();
    assert_eq!(c.int("big"), Err(Error::WrongType("big")));
    let mut c = Cursor::new(&[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0], 8).unwrap();
    assert_eq!(c.label(), Ok(Label::Other(&[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0][..])));
    let mut c = Cursor::new(&[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 8).unwrap();
    assert_eq!(c.int("min"), Ok(i64::MIN));
}
