//! The common bulk answer read without a `serde_json::Value`: every item a 2xx, each
//! `_id` the document's. Even cut down by `filter_path` (see
//! [`super::service::ANSWER_FIELDS`]), a 5,000-document batch answers with some 0.5 MB of
//! items, and building them as a `Value` tree cost the sink more than encoding the
//! request did.
//!
//! Anything else (an item with another status, a field of an unexpected type or given
//! twice, an answer of another shape or count) is left to [`super::service::read_items`]'s
//! full reader, which says what is wrong: this one only ever answers "every document
//! delivered", and only where the full reader would answer exactly that. Values it does
//! not look at are still checked with the parser a `Value` comes from (`deserialize_any`),
//! so an answer the full reader refuses as not JSON is not accepted here.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Whether `body` is, byte for byte, the answer Elasticsearch gives under the sink's
/// `filter_path` when every document of a batch of `create`s was written:
/// `{"errors":false,"items":[{"create":{"_id":"ID","status":2xx}},…]}`, one item per id of
/// `ids`, in order. Compared, not parsed: a backfill's 100,000 items took the parser 14 ms
/// of the sink's CPU. An id that JSON would escape is never matched (its bytes in the
/// answer would differ), and any other spacing, order or field falls to [`all_delivered`].
pub(super) fn exactly_written(body: &[u8], ids: &[&str]) -> bool {
    let plain = |id: &str| !id.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    let Some(mut rest) = body.strip_prefix(b"{\"errors\":false,\"items\":[") else {
        return false;
    };
    for (i, id) in ids.iter().enumerate() {
        let item = if i == 0 {
            Some(rest)
        } else {
            rest.strip_prefix(b",")
        };
        let Some(after) = item
            .and_then(|r| r.strip_prefix(b"{\"create\":{\"_id\":\""))
            .and_then(|r| r.strip_prefix(id.as_bytes()))
            .filter(|_| plain(id))
            .and_then(|r| r.strip_prefix(b"\",\"status\":2"))
        else {
            return false;
        };
        match after {
            [d1, d2, b'}', b'}', tail @ ..] if d1.is_ascii_digit() && d2.is_ascii_digit() => {
                rest = tail;
            }
            _ => return false,
        }
    }
    rest.strip_prefix(b"]}")
        .is_some_and(|tail| tail.iter().all(u8::is_ascii_whitespace))
}

/// Whether `body` is a bulk answer whose items are all 2xx, one per id of `ids`, in order,
/// each with the id sent (or none).
pub(super) fn all_delivered(body: &[u8], ids: &[&str]) -> bool {
    let Ok(Answer(Some(items))) = serde_json::from_slice::<Answer<'_>>(body) else {
        return false;
    };
    items.len() == ids.len()
        && items
            .iter()
            .zip(ids)
            .all(|(item, id)| item.id.as_deref().is_none_or(|answered| answered == *id))
}

/// The answer's `items`, when it is an object with one `items` array of plain items.
struct Answer<'a>(Option<Vec<Item<'a>>>);

/// An item answered 2xx, with its `_id` if it was a string.
struct Item<'a> {
    id: Option<Cow<'a, str>>,
}

/// Any JSON value, checked by the parser a `Value` comes from and dropped.
struct Any;

/// A string, borrowed when it has no escapes.
struct Text<'a>(Cow<'a, str>);

fn refuse<E: de::Error>(why: &str) -> E {
    E::custom(why)
}

impl<'de> Deserialize<'de> for Answer<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Root;
        impl<'de> Visitor<'de> for Root {
            type Value = Answer<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bulk answer")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut items = None;
                while let Some(Text(key)) = map.next_key()? {
                    if key == "items" {
                        if items.is_some() {
                            return Err(refuse("items given twice"));
                        }
                        items = Some(map.next_value::<Items<'de>>()?.0);
                    } else {
                        map.next_value::<Any>()?;
                    }
                }
                Ok(Answer(items))
            }
        }
        deserializer.deserialize_map(Root)
    }
}

struct Items<'a>(Vec<Item<'a>>);

impl<'de> Deserialize<'de> for Items<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Items<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<Item<'de>>()? {
                    items.push(item);
                }
                Ok(Items(items))
            }
        }
        deserializer.deserialize_seq(List)
    }
}

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Operation;
        impl<'de> Visitor<'de> for Operation {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with one operation")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                if map.next_key::<Text<'de>>()?.is_none() {
                    return Err(refuse("no operation"));
                }
                let item: Item<'de> = map.next_value_seed(Fields)?;
                if map.next_key::<Text<'de>>()?.is_some() {
                    return Err(refuse("more than one operation"));
                }
                Ok(item)
            }
        }
        deserializer.deserialize_map(Operation)
    }
}

/// The fields of one operation: `status` a 2xx, `_id` read if it is a string.
struct Fields;

impl<'de> de::DeserializeSeed<'de> for Fields {
    type Value = Item<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Item<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields {
    type Value = Item<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an item")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
        let mut status = None;
        let mut id: Option<Option<Cow<'de, str>>> = None;
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "status" if status.is_none() => status = Some(map.next_value::<u64>()?),
                "_id" if id.is_none() => id = Some(map.next_value::<IdValue<'de>>()?.0),
                "status" | "_id" => return Err(refuse("a field given twice")),
                _ => {
                    map.next_value::<Any>()?;
                }
            }
        }
        match status {
            Some(200..=299) => Ok(Item { id: id.flatten() }),
            _ => Err(refuse("not a 2xx")),
        }
    }
}

/// An `_id`: a string, or any other value, which the full reader ignores too.
struct IdValue<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for IdValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Id;
        impl<'de> Visitor<'de> for Id {
            type Value = IdValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an _id")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(IdValue(Some(Cow::Borrowed(text))))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(IdValue(Some(Cow::Owned(text.to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                AnyVisitor.visit_seq(seq).map(|Any| IdValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                AnyVisitor.visit_map(map).map(|Any| IdValue(None))
            }
        }
        deserializer.deserialize_any(Id)
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Str)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
        while seq.next_element::<Any>()?.is_some() {}
        Ok(Any)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any, A::Error> {
        // Keys as `Value` reads them (`deserialize_str`).
        while map.next_key::<Text<'de>>()?.is_some() {
            map.next_value::<Any>()?;
        }
        Ok(Any)
    }
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::elasticsearch::service::{Item as Read, ItemOutcome, read_items_fully};

    /// Where a fast reader says "all delivered", the full reader says so too; the byte
    /// comparison never says so where the parsing fast reader does not.
    fn agrees(body: &str, ids: &[&str]) -> bool {
        let fast = all_delivered(body.as_bytes(), ids);
        let exact = exactly_written(body.as_bytes(), ids);
        assert!(fast || !exact, "{body}");
        if fast {
            assert_eq!(
                read_items_fully(body.as_bytes(), ids),
                Ok(vec![Read::Outcome(ItemOutcome::Delivered); ids.len()]),
                "{body}"
            );
        }
        fast
    }

    #[test]
    fn the_common_answer_is_read_fast() {
        let ids = ["a", "b\"c"];
        for body in [
            r#"{"errors":false,"items":[{"create":{"_id":"a","_index":"e","status":201}},{"create":{"_id":"b\"c","status":201,"result":"created","_shards":{"total":2}}}],"took":3}"#,
            r#"{"items":[{"index":{"status":200}},{"create":{"status":299,"_id":7}}]}"#,
            r#" {"took":1e300,"items":[{"create":{"status":201,"error":{"type":"x"}}},{"create":{"status":201,"_id":null}}]} "#,
        ] {
            assert!(agrees(body, &ids), "{body}");
        }
    }

    #[test]
    fn the_answer_elasticsearch_gives_is_compared_not_parsed() {
        let ids = ["a1", "b-2"];
        for body in [
            r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":201}}]}"#,
            "{\"errors\":false,\"items\":[{\"create\":{\"_id\":\"a1\",\"status\":200}},{\"create\":{\"_id\":\"b-2\",\"status\":299}}]}\n",
        ] {
            assert!(exactly_written(body.as_bytes(), &ids), "{body}");
            assert!(agrees(body, &ids), "{body}");
        }
        // Each differs from the first above in one place; the byte comparison leaves it to
        // the parsers, which read it right.
        for (body, delivered) in [
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-3","status":201}}]}"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":409}}]}"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":2010}}]}"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":20}}]}"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}}]}"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":201}},{"create":{"_id":"c","status":201}}]}"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":201}}]} x"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":201}}]"#,
                false,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b-2","status":201}}],"took":1}"#,
                true,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}}, {"create":{"_id":"b-2","status":201}}]}"#,
                true,
            ),
            (
                r#"{"errors":false,"items":[{"create":{"_id":"a1","status":201}},{"create":{"_id":"b\u002d2","status":201}}]}"#,
                true,
            ),
        ] {
            assert!(!exactly_written(body.as_bytes(), &ids), "{body}");
            assert_eq!(agrees(body, &ids), delivered, "{body}");
        }
        // An id JSON escapes is never compared as it is.
        let quoted = ["a\"b"];
        let body = r#"{"errors":false,"items":[{"create":{"_id":"a"b","status":201}}]}"#;
        assert!(!exactly_written(body.as_bytes(), &quoted));
        let body = r#"{"errors":false,"items":[{"create":{"_id":"a\"b","status":201}}]}"#;
        assert!(!exactly_written(body.as_bytes(), &quoted));
        assert!(agrees(body, &quoted));
    }

    #[test]
    fn every_other_answer_goes_to_the_full_reader() {
        let ids = ["a", "b"];
        for body in [
            r#"{"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}"#,
            r#"{"items":[{"create":{"status":201}},{"create":{"status":429}}]}"#,
            r#"{"items":[{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201}},{"create":{"status":201}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201,"_id":"z"}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":"201"}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201.0}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":-201}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201,"status":400}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201},"index":{"status":201}},{"create":{"status":201}}]}"#,
            r#"{"items":[{},{"create":{"status":201}}]}"#,
            r#"{"items":[7,{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":7},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201}},{"create":{"status":201}}],"items":[]}"#,
            r#"{"took":1e400,"items":[{"create":{"status":201}},{"create":{"status":201}}]}"#,
            r#"{"items":[{"create":{"status":201}},{"create":{"status":201}}]} x"#,
            r#"[{"create":{"status":201}},{"create":{"status":201}}]"#,
            r#"{"items":{}}"#,
            r#"{"took":1}"#,
            "<html>502</html>",
            "",
        ] {
            assert!(!agrees(body, &ids), "{body}");
        }
    }
}
