//! Conditions ready to test series and points.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::ast::{CmpOp, Cond, Expr, Lit};
use super::math::eval;
use super::values::num;
use super::values::to_json;
use crate::tsdb::line_protocol::FieldValue;

/// Which keys of a condition are tags (the rest are fields), as influxd
/// decides: a key some series has as a tag is a tag; a key no series has
/// as a field, compared with a string or a regular expression, is a tag
/// too (a missing tag is "").
pub(super) enum Keys<'a> {
    /// Every key is a tag (the SHOW statements).
    AllTags,
    /// The tag keys and field keys of the series read.
    Known {
        /// Tag keys.
        tags: &'a BTreeSet<String>,
        /// Field keys.
        fields: &'a BTreeSet<String>,
    },
}

impl Keys<'_> {
    pub(super) fn is_tag(&self, key: &str, value: &Lit) -> bool {
        match self {
            Keys::AllTags => true,
            Keys::Known { tags, fields } => {
                tags.contains(key)
                    || (!fields.contains(key) && matches!(value, Lit::Str(_) | Lit::Regex(_)))
            }
        }
    }
}

/// A condition with its regular expressions compiled.
pub(super) struct Filter(Option<Node>);

enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Expr(Expr, CmpOp, Expr),
    Cmp {
        key: String,
        op: CmpOp,
        value: Lit,
        re: Option<regex::Regex>,
    },
}

impl Node {
    fn new(c: &Cond) -> Result<Node, String> {
        Ok(match c {
            Cond::And(a, b) => Node::And(Box::new(Node::new(a)?), Box::new(Node::new(b)?)),
            Cond::Or(a, b) => Node::Or(Box::new(Node::new(a)?), Box::new(Node::new(b)?)),
            Cond::Expr { left, op, right } => Node::Expr(left.clone(), *op, right.clone()),
            Cond::Cmp { key, op, value } => Node::Cmp {
                key: key.clone(),
                op: *op,
                value: value.clone(),
                re: match value {
                    Lit::Regex(r) => Some(
                        regex::Regex::new(r)
                            .map_err(|e| format!("invalid regular expression /{r}/: {e}"))?,
                    ),
                    _ => None,
                },
            },
        })
    }

    /// The value on a series' tags alone; `None` when it depends on fields.
    fn on_tags(&self, tags: &[(String, String)], keys: &Keys) -> Option<bool> {
        match self {
            Node::And(a, b) => match (a.on_tags(tags, keys), b.on_tags(tags, keys)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), x) | (x, Some(true)) => x,
                _ => None,
            },
            Node::Or(a, b) => match (a.on_tags(tags, keys), b.on_tags(tags, keys)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), x) | (x, Some(false)) => x,
                _ => None,
            },
            Node::Expr(..) => None,
            Node::Cmp { key, value, .. } if keys.is_tag(key, value) => {
                let v = tags
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or("", |(_, v)| v.as_str());
                Some(self.tag_holds(v))
            }
            Node::Cmp { .. } => None,
        }
    }

    fn tag_holds(&self, v: &str) -> bool {
        let Node::Cmp { op, value, re, .. } = self else {
            return false;
        };
        match (op, value, re) {
            (CmpOp::Match, _, Some(re)) => re.is_match(v),
            (CmpOp::NotMatch, _, Some(re)) => !re.is_match(v),
            (op, Lit::Str(s), _) => ordered(*op, v.cmp(s.as_str())),
            (CmpOp::Ne, _, _) => true,
            _ => false,
        }
    }

    fn row(
        &self,
        tags: &[(String, String)],
        keys: &Keys,
        field: &dyn Fn(&str) -> Option<FieldValue>,
    ) -> bool {
        match self {
            Node::And(a, b) => a.row(tags, keys, field) && b.row(tags, keys, field),
            Node::Or(a, b) => a.row(tags, keys, field) || b.row(tags, keys, field),
            Node::Expr(l, op, r) => {
                let mut leaf = |e: &Expr| match e {
                    Expr::Field(f) => field(f).map_or(serde_json::Value::Null, |v| to_json(&v)),
                    _ => serde_json::Value::Null,
                };
                let (a, b) = (eval(l, &mut leaf), eval(r, &mut leaf));
                let ord = match (&a, &b) {
                    // influxd compares strings here for equality only.
                    (serde_json::Value::String(_), serde_json::Value::String(_))
                        if !matches!(op, CmpOp::Eq | CmpOp::Ne) =>
                    {
                        None
                    }
                    (serde_json::Value::String(x), serde_json::Value::String(y)) => Some(x.cmp(y)),
                    (serde_json::Value::Bool(x), serde_json::Value::Bool(y)) => Some(x.cmp(y)),
                    _ => a
                        .as_f64()
                        .zip(b.as_f64())
                        .and_then(|(x, y)| x.partial_cmp(&y)),
                };
                ord.is_some_and(|o| ordered(*op, o))
            }
            Node::Cmp { key, value, .. } if keys.is_tag(key, value) => {
                self.on_tags(tags, keys).unwrap_or(false)
            }
            Node::Cmp { key, op, value, re } => {
                let Some(v) = field(key) else { return false };
                let ord = match (value, &v) {
                    (Lit::Regex(_), FieldValue::String(s)) => {
                        let hit = re.as_ref().is_some_and(|re| re.is_match(s));
                        return match op {
                            CmpOp::Match => hit,
                            CmpOp::NotMatch => !hit,
                            _ => false,
                        };
                    }
                    (Lit::Num(x), v) => num(v).and_then(|n| n.partial_cmp(x)),
                    // (A string field is compared for equality only.)
                    (Lit::Str(x), FieldValue::String(s)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
                        Some(s.as_str().cmp(x.as_str()))
                    }
                    (Lit::Bool(x), FieldValue::Boolean(b)) => Some(b.cmp(x)),
                    _ => None,
                };
                ord.is_some_and(|o| ordered(*op, o))
            }
        }
    }

    fn fields<'a>(&'a self, keys: &Keys, out: &mut BTreeSet<&'a str>) {
        match self {
            Node::And(a, b) | Node::Or(a, b) => {
                a.fields(keys, out);
                b.fields(keys, out);
            }
            Node::Expr(l, _, r) => {
                let mut leaves = Vec::new();
                l.leaves(&mut leaves);
                r.leaves(&mut leaves);
                out.extend(leaves.into_iter().filter_map(|e| match e {
                    Expr::Field(f) => Some(f.as_str()),
                    _ => None,
                }));
            }
            Node::Cmp { key, value, .. } if !keys.is_tag(key, value) => {
                out.insert(key);
            }
            Node::Cmp { .. } => {}
        }
    }
}

/// Whether an ordering satisfies `op` (regular expressions never do).
fn ordered(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
        CmpOp::Match | CmpOp::NotMatch => false,
    }
}

impl Filter {
    /// The filter of a condition (`None`: everything passes).
    pub(super) fn new(cond: Option<&Cond>) -> Result<Self, String> {
        cond.map(Node::new).transpose().map(Filter)
    }

    /// Whether a series with `tags` passes whatever its points are;
    /// `None` when its points must be tested one by one ([`Filter::row`]).
    pub(super) fn series(&self, tags: &[(String, String)], keys: &Keys) -> Option<bool> {
        match &self.0 {
            None => Some(true),
            Some(n) => n.on_tags(tags, keys),
        }
    }

    /// Whether the row of a series' fields at one time passes (`field`
    /// gives each field's value there; a missing one fails every
    /// comparison).
    pub(super) fn row(
        &self,
        tags: &[(String, String)],
        keys: &Keys,
        field: &dyn Fn(&str) -> Option<FieldValue>,
    ) -> bool {
        self.0.as_ref().is_none_or(|n| n.row(tags, keys, field))
    }

    /// The fields the condition reads.
    pub(super) fn fields<'a>(&'a self, keys: &Keys) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        if let Some(n) = &self.0 {
            n.fields(keys, &mut out);
        }
        out
    }
}
