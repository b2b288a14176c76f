//! Arithmetic in projections, on values as influxd's JSON has them:
//! integers stay integers under `+ - * %`, `/` gives a float, a division
//! by zero gives 0, and a missing or non-numeric operand gives null.

use serde_json::{Value, json};

use super::ast::{Expr, Op};
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
}
