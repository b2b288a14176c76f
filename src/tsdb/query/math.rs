//! Arithmetic in projections, on values as influxd's JSON has them:
//! integers stay integers under `+ - * %`, `/` gives a float, a division
//! by zero gives 0, and a missing or non-numeric operand gives null.

use serde_json::{Value, json};

use super::ast::{Expr, Func, Op};
use super::values::float_json;

enum N {
    I(i64),
    F(f64),
}

fn number(v: &Value) -> Option<N> {
    match v {
        Value::Number(n) => n.as_i64().map(N::I).or_else(|| n.as_f64().map(N::F)),
        _ => None,
    }
}

/// The value of `e`, its fields and aggregates given by `leaf`.
pub(super) fn eval(e: &Expr, leaf: &mut dyn FnMut(&Expr) -> Value) -> Value {
    match e {
        Expr::Field(_) | Expr::Call(..) => leaf(e),
        // (A statement with a string or boolean in arithmetic beside a
        // field of a known type is refused before it runs; alone they are
        // compared in conditions: `WHERE 'a' = 'a'`.)
        Expr::Str(s) => json!(s),
        Expr::Bool(b) => json!(b),
        Expr::Undefined(_) => Value::Null,
        Expr::Int(i) => json!(i),
        Expr::Float(f) => float_json(*f),
        Expr::Neg(x) => match number(&eval(x, leaf)) {
            Some(N::I(i)) => json!(i.wrapping_neg()),
            Some(N::F(f)) => float_json(-f),
            None => Value::Null,
        },
        Expr::Bin(l, op, r) => {
            let (a, b) = (eval(l, leaf), eval(r, leaf));
            match (number(&a), number(&b)) {
                (Some(N::I(x)), Some(N::I(y))) => match op {
                    Op::Add => json!(x.wrapping_add(y)),
                    Op::Sub => json!(x.wrapping_sub(y)),
                    Op::Mul => json!(x.wrapping_mul(y)),
                    Op::Div if y == 0 => json!(0),
                    Op::Div => float_json(x as f64 / y as f64),
                    Op::Rem if y == 0 => json!(0),
                    Op::Rem => json!(x.wrapping_rem(y)),
                },
                (Some(x), Some(y)) => {
                    let f = |n: N| match n {
                        N::I(i) => i as f64,
                        N::F(f) => f,
                    };
                    let (x, y) = (f(x), f(y));
                    float_json(match op {
                        Op::Add => x + y,
                        Op::Sub => x - y,
                        Op::Mul => x * y,
                        Op::Div | Op::Rem if y == 0.0 => 0.0,
                        Op::Div => x / y,
                        Op::Rem => x % y,
                    })
                }
                _ => Value::Null,
            }
        }
    }
}

/// The types of arithmetic over raw fields checked as influxd checks them
/// before it runs a statement: the first operation (innermost first, left
/// to right) with a string, boolean or tag operand is the statement's
/// error, `type error: s::string + 1: incompatible types: string and
/// integer`. `type_of` gives a name's type (`float`, …, `tag`; None when
/// unknown, which is never an error). Returns the expression's text and
/// type when it checks.
pub(super) fn check_types(
    e: &Expr,
    type_of: &dyn Fn(&str) -> Option<&'static str>,
) -> Result<(String, Option<&'static str>), String> {
    let operand = |e: &Expr| -> Result<(String, Option<&'static str>), String> {
        let (text, ty) = check_types(e, type_of)?;
        Ok(match e {
            Expr::Bin(..) | Expr::Neg(_) => (format!("({text})"), ty),
            _ => (text, ty),
        })
    };
    let binary = |l: (String, Option<&'static str>),
                  op: &str,
                  r: (String, Option<&'static str>)|
     -> Result<(String, Option<&'static str>), String> {
        let text = format!("{} {op} {}", l.0, r.0);
        let ty = match (l.1, r.1) {
            (Some(a), Some(b)) => {
                let numeric = |t: &str| matches!(t, "float" | "integer" | "unsigned");
                if !numeric(a) || !numeric(b) {
                    return Err(format!(
                        "type error: {text}: incompatible types: {a} and {b}"
                    ));
                }
                Some(if a == "integer" && b == "integer" && op != "/" {
                    "integer"
                } else {
                    "float"
                })
            }
            _ => None,
        };
        Ok((text, ty))
    };
    match e {
        Expr::Field(f) => Ok(match type_of(f) {
            Some(t) => (format!("{}::{t}", super::text::quote_ident(f)), Some(t)),
            None => (super::text::quote_ident(f), None),
        }),
        Expr::Int(i) => Ok((i.to_string(), Some("integer"))),
        Expr::Float(f) => Ok((format!("{f:.3}"), Some("float"))),
        Expr::Str(s) => Ok((super::text::string_literal(s), Some("string"))),
        Expr::Bool(b) => Ok((b.to_string(), Some("boolean"))),
        // influxd reads `-x` as `-1 * x`.
        Expr::Neg(x) => binary(("-1".into(), Some("integer")), "*", operand(x)?),
        Expr::Bin(l, op, r) => binary(operand(l)?, op.symbol(), operand(r)?),
        Expr::Call(f, field) => {
            let (arg, ty) = check_types(&Expr::Field(field.clone()), type_of)?;
            let text = match f {
                Func::CountDistinct => format!("count(distinct({arg}))"),
                Func::Percentile(n) if n.fract() == 0.0 => format!("percentile({arg}, {n})"),
                Func::Percentile(n) => format!("percentile({arg}, {n:.3})"),
                _ => format!("{}({arg})", f.name()),
            };
            // influxd's call types: these give floats, counts integers,
            // the rest their field's type.
            let ty = match f {
                Func::Mean | Func::Median | Func::Integral(_) | Func::Stddev => Some("float"),
                Func::Count | Func::CountDistinct => Some("integer"),
                _ => ty,
            };
            Ok((text, ty))
        }
        Expr::Undefined(_) => Ok((String::new(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(l: Expr, op: Op, r: Expr) -> Expr {
        Expr::Bin(Box::new(l), op, Box::new(r))
    }

    #[test]
    fn integers_stay_integers_but_divide_to_floats() {
        let mut none = |_: &Expr| Value::Null;
        assert_eq!(
            eval(&e(Expr::Int(7), Op::Add, Expr::Int(2)), &mut none),
            json!(9)
        );
        assert_eq!(
            eval(&e(Expr::Int(7), Op::Div, Expr::Int(2)), &mut none),
            json!(3.5)
        );
        assert_eq!(
            eval(&e(Expr::Int(7), Op::Rem, Expr::Int(2)), &mut none),
            json!(1)
        );
        assert_eq!(
            eval(&e(Expr::Int(7), Op::Div, Expr::Int(0)), &mut none),
            json!(0)
        );
        assert_eq!(
            eval(&e(Expr::Float(2.5), Op::Mul, Expr::Int(2)), &mut none),
            json!(5)
        );
        assert_eq!(
            eval(
                &e(Expr::Field("v".into()), Op::Mul, Expr::Int(2)),
                &mut none
            ),
            Value::Null
        );
        let mut v = |_: &Expr| json!(1.5);
        assert_eq!(
            eval(&Expr::Neg(Box::new(Expr::Field("v".into()))), &mut v),
            json!(-1.5)
        );
    }

    #[test]
    fn arithmetic_on_strings_booleans_and_tags_is_a_type_error_as_influxd_words_it() {
        let types = |n: &str| match n {
            "v" => Some("float"),
            "i" => Some("integer"),
            "s" => Some("string"),
            "host" => Some("tag"),
            _ => None,
        };
        let field = |n: &str| Box::new(Expr::Field(n.into()));
        let bin = |l: Box<Expr>, op, r: Box<Expr>| Box::new(Expr::Bin(l, op, r));
        let err = |e: &Expr| check_types(e, &types).unwrap_err();
        assert_eq!(
            err(&bin(field("s"), Op::Add, Box::new(Expr::Int(1)))),
            "type error: s::string + 1: incompatible types: string and integer"
        );
        assert_eq!(
            err(&bin(
                bin(field("v"), Op::Add, Box::new(Expr::Int(1))),
                Op::Mul,
                field("s")
            )),
            "type error: (v::float + 1) * s::string: incompatible types: float and string"
        );
        assert_eq!(
            err(&Expr::Neg(field("s"))),
            "type error: -1 * s::string: incompatible types: integer and string"
        );
        assert_eq!(
            err(&bin(field("s"), Op::Add, Box::new(Expr::Float(1.5)))),
            "type error: s::string + 1.500: incompatible types: string and float"
        );
        assert_eq!(
            err(&bin(field("v"), Op::Add, field("host"))),
            "type error: v::float + host::tag: incompatible types: float and tag"
        );
        // Numbers pass; an unknown name is never an error.
        assert!(check_types(&bin(field("i"), Op::Div, field("v")), &types).is_ok());
        assert!(check_types(&bin(field("nosuch"), Op::Add, field("s")), &types).is_ok());
    }
}
