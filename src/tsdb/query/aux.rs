//! Fields and tags beside a selector (`SELECT max(v), host, w`): the
//! values of the point the selector picked, as influxd's auxiliary fields.
//!
//! Only a statement with one call, a selector (`first`, `last`, `min`,
//! `max`, `percentile`, `top`, `bottom`, `sample`), may have them (see
//! `select::check`). Each of the point's columns is read from the series
//! the point came from, at its time: a tag's value, another field's value
//! there (null if it has none), arithmetic over those.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::ast::{Fill, Projection, Select};
use super::raw::{Col, column, star_columns};
use super::values::{ColName, TaggedSeries, to_json};

/// The auxiliary columns of a statement, in its order.
pub(super) struct Aux<'a> {
    /// Per column: the projection it comes from (its index), what it
    /// reads, its name.
    cols: Vec<(usize, Col<'a>, ColName)>,
}

impl<'a> Aux<'a> {
    /// The auxiliary columns of `s` (`*` is every field and tag but the
    /// grouped tags); None when it has none.
    pub(super) fn of(
        s: &'a Select,
        field_names: &BTreeSet<String>,
        tag_names: &BTreeSet<String>,
        grouped: &[String],
    ) -> Option<Aux<'a>> {
        let mut cols = Vec::new();
        for (i, (p, alias)) in s.fields.iter().zip(&s.aliases).enumerate() {
            if *p == Projection::All {
                cols.extend(
                    star_columns(field_names, tag_names, grouped)
                        .into_iter()
                        .map(|(c, n)| (i, c, n)),
                );
            } else if let Some((c, n)) = column(p, alias.as_ref()) {
                cols.push((i, c, n));
            }
        }
        if cols.is_empty() {
            return None;
        }
        Some(Aux { cols })
    }

    /// The columns of projection `i`: their indices among the auxiliary
    /// columns, and names.
    pub(super) fn columns_of(&self, i: usize) -> impl Iterator<Item = (usize, &ColName)> {
        self.cols
            .iter()
            .enumerate()
            .filter(move |(_, (p, ..))| *p == i)
            .map(|(k, (_, _, name))| (k, name))
    }

    /// How many columns there are.
    pub(super) fn len(&self) -> usize {
        self.cols.len()
    }

    /// The columns' values for the point at `t` of `series` (nulls for no
    /// point), each with whether `fill` fills it (see [`Aux::fillable`]).
    pub(super) fn cells(
        &self,
        point: Option<(&TaggedSeries, i64)>,
        how: &Fill,
        bucket_empty: bool,
    ) -> Vec<(Value, bool)> {
        let with_fill = |c: Value| {
            let fillable = Self::fillable(how, &c, bucket_empty);
            (c, fillable)
        };
        let Some(((tags, fields), t)) = point else {
            return vec![with_fill(Value::Null); self.cols.len()];
        };
        let field = |n: &str| {
            let pts = fields.get(n)?;
            let i = pts.binary_search_by_key(&t, |p| p.0).ok()?;
            Some(to_json(&pts[i].1))
        };
        let tag = |n: &str| tags.iter().find(|(k, _)| k == n).map(|(_, v)| json!(v));
        self.cols
            .iter()
            .map(|(_, c, _)| with_fill(c.value(&field, &tag)))
            .collect()
    }

    /// Whether a cell `fill` fills: with a number or `previous`, every
    /// null (influxd fills its points' auxiliary nulls too); otherwise
    /// only those of an empty bucket (`linear` none: it interpolates the
    /// selector alone).
    fn fillable(fill: &Fill, cell: &Value, bucket_empty: bool) -> bool {
        match fill {
            Fill::Value(_) | Fill::Previous => cell.is_null(),
            Fill::Linear => false,
            Fill::Null | Fill::None => bucket_empty,
        }
    }
}

/// The series among `members` whose `field` holds `value` at `t` (the
/// point a selector picked), the first such.
pub(super) fn series_of<'m>(
    members: &[&'m TaggedSeries],
    field: &str,
    t: i64,
    value: &Value,
) -> Option<&'m TaggedSeries> {
    members.iter().copied().find(|(_, fields)| {
        fields.get(field).is_some_and(|pts| {
            let from = pts.partition_point(|p| p.0 < t);
            pts[from..]
                .iter()
                .take_while(|p| p.0 == t)
                .any(|p| to_json(&p.1) == *value)
        })
    })
}
