//! Serde adapters that store protobuf messages as their prost encoding.
//!
//! The generated Temporal types carry pbjson serde impls (skip-default fields, base64, enum
//! names) that only round-trip through self-describing formats. Mutable state, requests and
//! replies travel through bincode (Raft log, RocksDB), so every proto-typed field uses one of
//! these modules via `#[serde(with = "crate::pb::...")]`: the field is written as the message's
//! canonical protobuf bytes, which bincode handles like any byte string.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use prost::Message;
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, SeqAccess, Visitor},
};

/// A byte string that serializes with `serialize_bytes` (bincode: length + raw bytes).
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn decode<T: Message + Default, E: de::Error>(bytes: &[u8]) -> Result<T, E> {
    T::decode(bytes).map_err(|e| E::custom(format!("protobuf decode: {e}")))
}

/// A required message field `T`.
pub mod msg {
    use super::*;

    pub fn serialize<T: Message, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        Bytes(v.encode_to_vec()).serialize(s)
    }

    pub fn deserialize<'de, T: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let b = Bytes::deserialize(d)?;
        decode(&b.0)
    }
}

/// An optional message field `Option<T>`.
pub mod opt {
    use super::*;

    pub fn serialize<T: Message, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|m| Bytes(m.encode_to_vec())).serialize(s)
    }

    pub fn deserialize<'de, T: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<Bytes>::deserialize(d)? {
            Some(b) => decode(&b.0).map(Some),
            None => Ok(None),
        }
    }
}

/// A repeated message field `Vec<T>`.
pub mod vec {
    use super::*;

    pub fn serialize<T: Message, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|m| Bytes(m.encode_to_vec()))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, T: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Vec::<Bytes>::deserialize(d)?
            .iter()
            .map(|b| decode(&b.0))
            .collect()
    }
}

/// A message-valued map `BTreeMap<K, T>`.
pub mod map {
    use super::*;

    pub fn serialize<K: Serialize + Ord, T: Message, S: Serializer>(
        v: &BTreeMap<K, T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(k, m)| (k, Bytes(m.encode_to_vec())))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, K, T, D>(d: D) -> Result<BTreeMap<K, T>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        T: Message + Default,
        D: Deserializer<'de>,
    {
        let _ = PhantomData::<T>;
        Vec::<(K, Bytes)>::deserialize(d)?
            .into_iter()
            .map(|(k, b)| decode(&b.0).map(|m| (k, m)))
            .collect()
    }
}
