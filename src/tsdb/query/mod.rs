//! InfluxQL as influxd 1.6.7 answers it, with InfluxDB's JSON result
//! shape: the lexer and parser, the AST, conditions, the scan of a
//! SELECT planned on the series index ([`crate::tsdb::key_index`]),
//! aggregates (folded as the scan reads where they can: `fold`;
//! `top()`/`bottom()` keep of each series only what they can pick:
//! `selector_prune`; `sample()` keeps a reservoir per group and bucket:
//! `sampler`), `SLIMIT`/`SOFFSET` applied shard by shard as influxd's
//! (`slimit`),
//! `GROUP BY time` windows in UTC or a `tz()` zone (`window`) and `fill`,
//! transformations, the technical-analysis indicators (`indicators`),
//! Holt-Winters forecasts (`holt_winters`), Go's sort where influxd's
//! picks depend on it (`go_sort`), arithmetic, the SHOW statements,
//! `EXPLAIN` (`explain`) and `EXPLAIN ANALYZE` (`explain_analyze`), `sample()` beside other functions (`zip`), raw
//! points answered a page at a time for `chunked=true` (`stream`),
//! deletes and `INTO`; in tests, statements printed back as InfluxQL
//! (`print`, for the parser's property tests). Statements that
//! change state become raft commands ([`Statement::command`]); the rest
//! read a node's read view ([`execute_read`]). The README lists the
//! statements and what still differs from influxd.

mod aggregate;
mod ast;
mod aux;
mod command;
mod cond;
mod delete;
mod exec;
mod explain;
mod explain_analyze;
mod fill;
mod filter;
mod fold;
mod go_sort;
mod holt_winters;
mod indicators;
mod into;
mod lexer;
mod math;
mod parser;
#[cfg(test)]
mod print;
mod raw;
mod sampler;
mod scan;
mod select;
mod select_exec;
mod selector_prune;
mod show;
mod slimit;
mod stream;
mod text;
mod transform;
mod values;
mod window;
mod zip;

pub use ast::*;
pub use delete::SeriesMatch;
pub use exec::{execute_read, execute_read_as};
pub use indicators::{Indicator, IndicatorKind, Warmup};
pub use into::into_points;
pub use lexer::parse_duration;
pub use parser::{parse, parse_bound, parse_with_text};
pub use select_exec::{Interrupt, SelectLimits};
pub use stream::{stream_select, streamable};
pub use text::quote_ident;
pub(crate) use values::series_tags;
pub use values::with_typed_floats;

#[cfg(test)]
mod tests;
