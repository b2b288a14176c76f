//! Parser tests, and what the other modules' tests share.

use super::*;

/// The SELECT `q` parses to (test statements are known to parse).
pub(super) fn select_of(q: &str) -> Select {
    match parse(q, 0) {
        Ok(mut v) => match v.remove(0) {
            Statement::Select(s) => *s,
            other => panic!("{q}: {other:?}"),
        },
        Err(e) => panic!("{q}: {e}"),
    }
}

#[test]
fn statements_parse() {
    assert_eq!(
        parse("create database x; SHOW DATABASES", 0).unwrap(),
        vec![
            Statement::CreateDatabase("x".into()),
            Statement::ShowDatabases
        ]
    );
    assert_eq!(
            parse("CREATE RETENTION POLICY \"one week\" ON db DURATION 1w REPLICATION 1 SHARD DURATION 1d DEFAULT", 0).unwrap()[0],
            Statement::CreateRetentionPolicy { name: "one week".into(), db: "db".into(), duration: 604_800_000_000_000, replication: 1, shard_duration: 86_400_000_000_000, default: true }
        );
    let Statement::Select(s) = &parse("SELECT count(v), mean(v) FROM db.autogen.cpu WHERE time >= '2023-11-14T22:13:20Z' AND time < now() - 1h AND host = 'a' LIMIT 5", 10_000_000_000_000).unwrap()[0] else { panic!() };
    assert_eq!(
        s.fields,
        vec![
            Projection::Agg(Func::Count, "v".into()),
            Projection::Agg(Func::Mean, "v".into())
        ]
    );
    assert_eq!(
        (s.db.as_deref(), s.rp.as_deref(), s.measurement.as_str()),
        (Some("db"), Some("autogen"), "cpu")
    );
    assert_eq!(
        (s.min, s.max, s.limit),
        (
            1_700_000_000_000_000_000,
            10_000_000_000_000 - 3_600_000_000_000 - 1,
            5
        )
    );
    assert_eq!(
        s.cond,
        Some(Cond::Cmp {
            key: "host".into(),
            op: CmpOp::Eq,
            value: Lit::Str("a".into()),
        })
    );
    // OR and parentheses; a time comparison leaves the condition (even
    // from an OR, as influxd's) for the bounds.
    let Statement::Select(s) = &parse(
        "SELECT v * 2 + w FROM m WHERE (host = 'a' OR v > 1) AND time > 5 OR time < 9",
        0,
    )
    .unwrap()[0] else {
        panic!()
    };
    let cmp = |key: &str, op, value| Cond::Cmp {
        key: key.into(),
        op,
        value,
    };
    assert_eq!(
        s.cond,
        Some(Cond::Or(
            Box::new(cmp("host", CmpOp::Eq, Lit::Str("a".into()))),
            Box::new(cmp("v", CmpOp::Gt, Lit::Num(1.0)))
        ))
    );
    assert_eq!((s.min, s.max), (6, 8));
    assert_eq!(
        s.fields,
        vec![Projection::Math(Expr::Bin(
            Box::new(Expr::Bin(
                Box::new(Expr::Field("v".into())),
                Op::Mul,
                Box::new(Expr::Int(2))
            )),
            Op::Add,
            Box::new(Expr::Field("w".into()))
        ))]
    );
    for (bad, want) in [
        ("", "empty query"),
        ("DELET FROM x", "expected SELECT"),
        ("DELETE x", "expected FROM, WHERE"),
        ("SELECT derivative(mean(v)) * 2 FROM m", "arithmetic"),
        ("SELECT v FROM m WHERE (host = 'a'", "expected )"),
        ("SELECT v FROM m WHERE time > 'yesterday'", "invalid time"),
        (
            "SELECT v FROM m WHERE v > ,",
            "expected identifier, string, number, bool",
        ),
        ("SHOW CONTINUOUS", "expected QUERIES"),
        ("SHOW FOO", "expected CONTINUOUS"),
        ("SHOW DATABASES;\n  SHOW x", "at line 2, char 8"),
        ("SELECT v FROM", "at line 1, char 15"),
        ("SHOW TAG VALUES", "expected WITH"),
        (
            "SELECT v FROM m WHERE host =~ /(/",
            "invalid regular expression",
        ),
        (
            "CREATE RETENTION POLICY r ON db REPLICATION 1",
            "needs DURATION",
        ),
        ("SELECT 'x", "unterminated"),
    ] {
        let e = parse(bad, 0).unwrap_err();
        assert!(e.contains(want), "{bad:?}: {e}");
    }
}

#[test]
fn a_continuous_query_into_each_source_is_stored_as_text_that_parses_back() {
    let q = "CREATE CONTINUOUS QUERY down ON db BEGIN SELECT mean(*) INTO db2.autogen.:MEASUREMENT FROM /^cpu/ GROUP BY time(1m), * END";
    let Statement::CreateContinuousQuery { text, .. } = &parse(q, 0).unwrap()[0] else {
        panic!("not a continuous query");
    };
    assert_eq!(
        text,
        &format!(
            "CREATE CONTINUOUS QUERY down ON db BEGIN SELECT mean(*) INTO db2.autogen.:MEASUREMENT FROM db.\"{DEFAULT_RP_MARK}\"./^cpu/ GROUP BY time(1m), * END"
        )
    );
    let stored = text.replace(&format!("\"{DEFAULT_RP_MARK}\""), "autogen");
    let select = stored
        .split_once(" BEGIN ")
        .and_then(|(_, rest)| rest.strip_suffix(" END"))
        .expect("BEGIN … END");
    let Statement::Select(s) = &parse(select, 0).unwrap()[0] else {
        panic!("not a SELECT: {select}");
    };
    let into = s.into.as_ref().expect("INTO");
    assert!(into.each_source);
    assert_eq!(
        (into.db.as_deref(), into.rp.as_deref()),
        (Some("db2"), Some("autogen"))
    );
    assert_eq!(
        (s.db.as_deref(), s.rp.as_deref()),
        (Some("db"), Some("autogen"))
    );
    assert_eq!(s.sources, vec![Source::Regex("^cpu".into())]);
    // Alone, `:MEASUREMENT` names nothing (influxd's parse error).
    assert!(
        parse("SELECT v INTO :MEASUREMENT FROM m", 0)
            .unwrap_err()
            .contains("found :, expected identifier")
    );
}

#[test]
fn casts_on_names_are_read_and_left_out() {
    let plain = parse("SELECT host, v FROM cpu WHERE host = 'a'", 0).unwrap();
    let cast = parse(
        "SELECT host::tag, \"v\"::float FROM cpu WHERE \"host\"::TAG = 'a'",
        0,
    )
    .unwrap();
    assert_eq!(plain, cast);
    // Not a type: still an error.
    assert!(parse("SELECT host::nope FROM cpu", 0).is_err());
}

#[test]
fn selectors_take_fields_and_tags_beside_them_alone() {
    let check = |q: &str| {
        let Statement::Select(s) = &parse(q, 0).unwrap()[0] else {
            panic!("{q}")
        };
        select::check(s)
    };
    assert_eq!(check("SELECT max(v), host, w FROM cpu"), Ok(()));
    assert_eq!(check("SELECT top(v, 2), host FROM cpu"), Ok(()));
    assert_eq!(check("SELECT percentile(v, 5), * FROM cpu"), Ok(()));
    assert_eq!(
        check("SELECT max(v), min(v), host FROM cpu"),
        Err("mixing multiple selector functions with tags or fields is not supported".into())
    );
    assert_eq!(
        check("SELECT mean(v), host FROM cpu"),
        Err("mixing aggregate and non-aggregate queries is not supported".into())
    );
    assert_eq!(
        check("SELECT top(v, 2), min(v), host FROM cpu"),
        Err("selector function top() cannot be combined with other functions".into())
    );
    assert_eq!(
        check("SELECT top(v, 3), host FROM cpu LIMIT 2"),
        Err(
            "limit (3) in top function can not be larger than the LIMIT (2) in the select statement"
                .into()
        )
    );
}
