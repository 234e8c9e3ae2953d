//! Unit tests of the codec: the side table, the fast paths, type tags.

use super::*;
use serde::{Deserialize, Deserializer, Serializer};
use std::os::fd::{AsFd, OwnedFd};

struct Fd(OwnedFd);
impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0.as_fd(), "test handle", s)
    }
}
impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_fd("test handle", d).map(Fd)
    }
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

#[test]
fn handles_round_trip_nested() {
    let value = (7u32, vec![Some(Fd(devnull())), None, Some(Fd(devnull()))]);
    let (bytes, fds) = encode(&value).unwrap();
    // The two handles and, once, the sender's liveness domain.
    assert_eq!(fds.len(), 3);
    let back: (u32, Vec<Option<Fd>>) = decode(&bytes, fds).unwrap();
    assert_eq!(back.0, 7);
    assert!(back.1[0].is_some() && back.1[1].is_none() && back.1[2].is_some());
}

#[test]
fn missing_handle_is_an_error() {
    let (bytes, _fds) = encode(&Fd(devnull())).unwrap();
    let err = decode::<Fd>(&bytes, Vec::new()).err().unwrap();
    assert!(err.to_string().contains("bad handle index 1"), "{err}");
}

#[test]
fn reused_index_is_an_error() {
    // Two values that both claim index 0.
    let (bytes, fds) = encode(&Fd(devnull())).unwrap();
    let mut twice = bytes.clone();
    twice.extend_from_slice(&bytes);
    let err = decode::<(Fd, Fd)>(&twice, fds).err().unwrap();
    assert!(err.to_string().contains("already used"), "{err}");
}

#[test]
fn foreign_serializer_is_refused() {
    assert!(postcard::to_stdvec(&Fd(devnull())).is_err());
    assert!(encode(&Fd(devnull())).is_ok());
}

#[test]
fn byte_fast_path_matches_postcard() {
    for len in [0usize, 1, 127, 128, 300, 70_000] {
        let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let (prefix, n) = varint(v.len());
        let mut ours = prefix[..n].to_vec();
        ours.extend_from_slice(&v);
        assert_eq!(ours, postcard::to_stdvec(&v).unwrap(), "len {len}");
        let back: Vec<u8> = decode_bytes(&ours).unwrap().unwrap();
        assert_eq!(back, v);
        let text = "é".repeat(len / 2);
        let encoded = postcard::to_stdvec(&text).unwrap();
        let back: String = decode_bytes(&encoded).unwrap().unwrap();
        assert_eq!(back, text);
    }
    assert!(
        decode_bytes::<u64>(&[1, 2]).is_none(),
        "other types take the codec"
    );
    // A length prefix that disagrees with the body, bad UTF-8, no prefix.
    assert!(decode_bytes::<Vec<u8>>(&[5, 1, 2]).unwrap().is_err());
    assert!(decode_bytes::<String>(&[2, 0xff, 0xfe]).unwrap().is_err());
    assert!(decode_bytes::<Vec<u8>>(&[0x80; 12]).unwrap().is_err());
    assert!(decode_bytes::<Vec<u8>>(&[]).unwrap().is_err());
}

#[test]
fn type_tags_differ() {
    assert_eq!(type_tag::<u64>(), type_tag::<u64>());
    assert_ne!(type_tag::<u64>(), type_tag::<i64>());
    assert_ne!(type_tag::<String>(), type_tag::<Vec<u8>>());
}

#[test]
fn wrong_type_names_expected() {
    let (bytes, fds) = encode(&"hello".to_string()).unwrap();
    let err = decode::<u64>(&bytes, fds).err().unwrap();
    assert!(err.to_string().contains("u64"), "{err}");
}

/// A value whose `Serialize` always fails with its own reason.
struct Refuses;
impl Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no way"))
    }
}

#[test]
fn a_custom_serialize_error_keeps_its_text() {
    let err = encode(&(1u32, vec![Some(Refuses)])).unwrap_err();
    assert!(err.to_string().contains("no way"), "{err}");
    // The plain path fails too; its caller re-encodes for the text.
    assert!(!encode_plain_into(&Refuses, &mut Vec::new()));
}

#[test]
fn a_flattened_struct_is_refused_naming_flatten() {
    #[derive(Serialize)]
    struct Inner {
        a: u32,
    }
    #[derive(Serialize)]
    struct Outer {
        #[serde(flatten)]
        inner: Inner,
    }
    let err = encode(&Outer {
        inner: Inner { a: 1 },
    })
    .unwrap_err();
    assert!(err.to_string().contains("flatten"), "{err}");
}
