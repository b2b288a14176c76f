//! Conditions ready to test series and points.

use super::ast::{FieldCond, FieldLit, TagCond};
use super::values::num;
use crate::tsdb::line_protocol::FieldValue;

/// Tag conditions, ready to test series (regular expressions compiled).
pub(super) struct TagFilter(Vec<(TagCond, Option<regex::Regex>)>);

impl TagFilter {
    pub(super) fn new(conds: &[TagCond]) -> Result<Self, String> {
        conds
            .iter()
            .map(|c| {
                let re = c
                    .regex
                    .then(|| regex::Regex::new(&c.value).map_err(|e| e.to_string()))
                    .transpose()?;
                Ok((c.clone(), re))
            })
            .collect::<Result<_, String>>()
            .map(TagFilter)
    }

    /// Whether a series with `tags` passes every condition (a missing tag
    /// is "").
    pub(super) fn keep(&self, tags: &[(String, String)]) -> bool {
        self.0.iter().all(|(c, re)| {
            let v = tags
                .iter()
                .find(|(k, _)| k == &c.key)
                .map_or("", |(_, v)| v.as_str());
            let hit = match re {
                Some(re) => re.is_match(v),
                None => v == c.value,
            };
            hit == c.eq
        })
    }
}

impl FieldCond {
    /// Whether `v` passes (a value of another kind than the literal never
    /// does).
    pub(super) fn holds(&self, v: &FieldValue) -> bool {
        use std::cmp::Ordering;
        let ord = match (&self.value, v) {
            (FieldLit::Num(x), v) => num(v).and_then(|n| n.partial_cmp(x)),
            (FieldLit::Str(x), FieldValue::String(s)) => Some(s.as_str().cmp(x.as_str())),
            (FieldLit::Bool(x), FieldValue::Boolean(b)) => Some(b.cmp(x)),
            _ => None,
        };
        let Some(o) = ord else { return false };
        match self.op.as_str() {
            "=" => o == Ordering::Equal,
            "!=" => o != Ordering::Equal,
            "<" => o == Ordering::Less,
            "<=" => o != Ordering::Greater,
            ">" => o == Ordering::Greater,
            ">=" => o != Ordering::Less,
            _ => false,
        }
    }
}
