//! The InfluxQL subset of DESIGN §5, with InfluxDB's JSON result shape.
//!
//! Statements: `CREATE DATABASE`, `DROP DATABASE`, `SHOW DATABASES`,
//! `CREATE | ALTER | DROP RETENTION POLICY`, `SHOW RETENTION POLICIES [ON db]`,
//! `SHOW MEASUREMENTS [ON db]`, and `SELECT <proj>[, …] FROM [[db.]rp.]m
//! [WHERE <cond> [AND …]] [LIMIT n]` where a projection is `*`, a field, or
//! `count|sum|min|max|mean|first|last(field)` (`count(*)` too), and a
//! condition compares `time` with an integer (ns), an RFC3339 string or
//! `now() [± duration]`, or a tag with `=`/`!=` and a string. Statements that
//! change state become raft commands ([`Statement::command`]); the rest read
//! local state ([`execute_read`]).

mod aggregate;
mod ast;
mod command;
mod cond;
mod delete;
mod exec;
mod fill;
mod filter;
mod into;
mod lexer;
mod math;
mod parser;
mod raw;
mod scan;
mod select;
mod select_exec;
mod show;
mod text;
mod transform;
mod values;

pub use ast::*;
pub use delete::SeriesMatch;
pub use exec::{execute_read, execute_read_as};
pub use into::into_points;
pub use lexer::parse_duration;
pub use parser::{parse, parse_bound, parse_with_text};
pub use select_exec::{Interrupt, SelectLimits};
pub use text::quote_ident;
pub(crate) use values::series_tags;
pub use values::with_typed_floats;

#[cfg(test)]
mod tests;
