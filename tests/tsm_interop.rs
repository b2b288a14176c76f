//! Our TSM reader against files written by a real `influxd` 1.6.7: points
//! written over HTTP, backed up with `influxd backup -portable`, and decoded
//! from the shard tarballs must be exactly the points written.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::influxd::Influxd;
use raftsnap::tsdb::tsm::{TsmReader, Values};

/// Extracts every `.tsm` of every `*.tar.gz` in `dir` into `out`.
fn extract_tsm(dir: &std::path::Path, out: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".tar.gz") {
            continue;
        }
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap());
        let mut ar = tar::Archive::new(gz);
        for entry in ar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().replace('/', "_");
            if name.ends_with(".tsm") {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).unwrap();
                let dst = out.join(name);
                std::fs::write(&dst, buf).unwrap();
                files.push(dst);
            }
        }
    }
    files
}

#[test]
fn tsm_files_written_by_real_influxd_decode_to_exactly_the_points_written() {
    let Some(db) = Influxd::start() else { return };
    db.query("", "CREATE DATABASE interop");
    // Every type, with timestamps that take each encoding: regular (RLE),
    // irregular (packed), and gaps past 60 bits (raw); floats with
    // repeats, extremes and negative zero; integer extremes; strings with
    // escapes and unicode; 2500 points so a key spans several blocks.
    let mut body = String::new();
    let mut want: BTreeMap<String, (Vec<i64>, Values)> = BTreeMap::new();
    let mut floats = (Vec::new(), Vec::new());
    for i in 0..2500i64 {
        let t = 1_600_000_000_000_000_000 + i * 10_000_000_000;
        let v = match i % 7 {
            0 => 0.0,
            1 => -0.0,
            2 => f64::MAX,
            3 => f64::MIN_POSITIVE,
            4 => (i as f64) * 0.1,
            _ => 42.5,
        };
        body.push_str(&format!("cpu,host=a f={v:?} {t}\n"));
        floats.0.push(t);
        floats.1.push(v);
    }
    want.insert(
        "cpu,host=a#!~#f".into(),
        (floats.0, Values::Float(floats.1)),
    );
    let its: Vec<i64> = vec![
        -9_000_000_000_000_000_000,
        1,
        5,
        1_000,
        9_000_000_000_000_000_000,
    ];
    let ivs: Vec<i64> = vec![i64::MIN, -1, 0, 7, i64::MAX];
    for (t, v) in its.iter().zip(&ivs) {
        body.push_str(&format!("mem,host=b\\ c i={v}i {t}\n"));
    }
    want.insert("mem,host=b\\ c#!~#i".into(), (its, Values::Integer(ivs)));
    let sts: Vec<i64> = vec![100, 250, 260];
    let svs = vec![
        "plain".to_string(),
        "with \"quotes\" and \\ backslash".to_string(),
        "ünïcødé, = spaces".to_string(),
    ];
    for (t, v) in sts.iter().zip(&svs) {
        body.push_str(&format!(
            "log s=\"{}\" {t}\n",
            v.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    want.insert("log#!~#s".into(), (sts, Values::String(svs)));
    let bts: Vec<i64> = (0..20).map(|i| i * 3).collect();
    let bvs: Vec<bool> = (0..20).map(|i| i % 3 == 0).collect();
    for (t, v) in bts.iter().zip(&bvs) {
        body.push_str(&format!("flag b={v} {t}\n"));
    }
    want.insert("flag#!~#b".into(), (bts, Values::Boolean(bvs)));
    db.write("interop", &body);

    let backup = tempfile::tempdir().unwrap();
    db.backup(&["-db", "interop"], backup.path());
    let out = tempfile::tempdir().unwrap();
    let files = extract_tsm(backup.path(), out.path());
    assert!(!files.is_empty(), "no TSM files in the backup");

    // Far-apart timestamps land in different shards (different files):
    // gather each key's pieces and put them in time order.
    let mut pieces: BTreeMap<String, Vec<(Vec<i64>, Values)>> = BTreeMap::new();
    for f in &files {
        let r = TsmReader::open(f).unwrap();
        let keys: Vec<String> = r.keys().map(|(k, _)| k.to_string()).collect();
        for k in keys {
            pieces
                .entry(k.clone())
                .or_default()
                .push(r.read(&k).unwrap().unwrap());
        }
    }
    let mut got: BTreeMap<String, (Vec<i64>, Values)> = BTreeMap::new();
    for (k, mut ps) in pieces {
        ps.sort_by_key(|(ts, _)| ts[0]);
        let mut it = ps.into_iter();
        let (mut ts, mut vals) = it.next().unwrap();
        for (t, v) in it {
            ts.extend(t);
            vals.extend(v).unwrap();
        }
        got.insert(k, (ts, vals));
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, (ts, vals)) in &want {
        let (gts, gvals) = &got[k];
        assert_eq!(gts, ts, "{k}: timestamps");
        match (gvals, vals) {
            (Values::Float(a), Values::Float(b)) => assert_eq!(
                a.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
                "{k}"
            ),
            (a, b) => assert_eq!(a, b, "{k}"),
        }
    }
}

#[test]
fn tsm_files_we_write_restore_into_real_influxd_with_exactly_our_points() {
    use raftsnap::snapshotter::portable::{ShardFiles, write_backup};
    use raftsnap::tsdb::meta::Metastore;
    use raftsnap::tsdb::tsm::TsmWriter;

    let Some(db) = Influxd::start() else { return };
    let t0: i64 = 1_700_000_000_000_000_000;
    let mut meta = Metastore::default();
    meta.create_database("ours").unwrap();
    let shard = meta.shard_for("ours", "", t0).unwrap();

    let ft: Vec<i64> = (0..1500).map(|i| t0 + i * 1_000_000_000).collect();
    let fv: Vec<f64> = (0..1500)
        .map(|i| {
            if i % 5 == 0 {
                0.25
            } else {
                (i as f64).sqrt() * -3.5
            }
        })
        .collect();
    let it: Vec<i64> = vec![t0 + 1, t0 + 7, t0 + 1_000, t0 + 1_000_000_007];
    let iv: Vec<i64> = vec![i64::MIN + 1, -1, 0, i64::MAX];
    let st: Vec<i64> = vec![t0 + 3, t0 + 4];
    let sv: Vec<String> = vec!["tsnode wrote this".into(), "ünïcødé \"q\"".into()];
    let bt: Vec<i64> = (0..10).map(|i| t0 + i * 60_000_000_000).collect();
    let bv: Vec<bool> = (0..10).map(|i| i % 4 == 1).collect();

    let dir = tempfile::tempdir().unwrap();
    let tsm = dir.path().join("000000001-000000001.tsm");
    let mut w = TsmWriter::create(&tsm).unwrap();
    w.write("cpu,host=a#!~#b", &bt, &Values::Boolean(bv.clone()))
        .unwrap();
    w.write("cpu,host=a#!~#f", &ft, &Values::Float(fv.clone()))
        .unwrap();
    w.write("cpu,host=a#!~#i", &it, &Values::Integer(iv.clone()))
        .unwrap();
    w.write("cpu,host=a#!~#s", &st, &Values::String(sv.clone()))
        .unwrap();
    w.finish().unwrap();

    let backup = dir.path().join("backup");
    let files = ShardFiles {
        db: "ours".into(),
        rp: "autogen".into(),
        shard_id: shard,
        files: vec![("000000001-000000001.tsm".into(), tsm)],
    };
    write_backup(&backup, "20240101T000000Z", &meta.to_proto(1, 1), &[files]).unwrap();
    db.restore(&["-db", "ours"], &backup);

    let rows = db.rows("ours", "SELECT f FROM cpu", ft.len());
    assert_eq!(rows.len(), ft.len(), "{}", db.log());
    for ((t, v), (wt, wv)) in rows.iter().zip(ft.iter().zip(&fv)) {
        assert_eq!((*t, v.as_f64().unwrap().to_bits()), (*wt, wv.to_bits()));
    }
    let rows = db.rows("ours", "SELECT i FROM cpu", it.len());
    let got: Vec<(i64, i64)> = rows
        .iter()
        .map(|(t, v)| (*t, v.as_i64().unwrap()))
        .collect();
    assert_eq!(
        got,
        it.iter()
            .copied()
            .zip(iv.iter().copied())
            .collect::<Vec<_>>()
    );
    let rows = db.rows("ours", "SELECT s FROM cpu", st.len());
    let got: Vec<(i64, String)> = rows
        .iter()
        .map(|(t, v)| (*t, v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        st.iter()
            .copied()
            .zip(sv.iter().cloned())
            .collect::<Vec<_>>()
    );
    let rows = db.rows("ours", "SELECT b FROM cpu", bt.len());
    let got: Vec<(i64, bool)> = rows
        .iter()
        .map(|(t, v)| (*t, v.as_bool().unwrap()))
        .collect();
    assert_eq!(
        got,
        bt.iter()
            .copied()
            .zip(bv.iter().copied())
            .collect::<Vec<_>>()
    );
    let count = db.query("ours", "SELECT count(f) FROM cpu WHERE host = 'a'");
    assert_eq!(count["results"][0]["series"][0]["values"][0][1], 1500);
}

/// The tombstone files tsnode writes are influxd's: a shard's TSM file and
/// its tombstone, put in place of a stopped influxd's shard files, answer
/// in influxd without the deleted points and series.
#[test]
fn tombstone_files_we_write_are_read_by_real_influxd() {
    use raftsnap::tsdb::line_protocol::FieldValue;
    use raftsnap::tsdb::shard::Shard;
    let Some(mut real) = Influxd::start() else {
        return;
    };
    // influxd makes the shard (1970's group) that will hold our files.
    real.query("", "CREATE DATABASE d");
    real.write("d", "m,h=z v=9 1000000000");
    let t = tempfile::tempdir().unwrap();
    let mut s = Shard::create(1, t.path().join("1")).unwrap();
    for (key, ts, v) in [
        ("m,h=a#!~#v", 1_000_000_000, 1.0),
        ("m,h=a#!~#v", 2_000_000_000, 2.0),
        ("m,h=b#!~#v", 1_000_000_000, 3.0),
        ("m,h=b#!~#v", 2_000_000_000, 4.0),
    ] {
        assert!(s.write(key, ts, FieldValue::Float(v)));
    }
    s.flush().unwrap().unwrap();
    s.delete(&|k: &str| k.starts_with("m,h=a#"), i64::MIN, 1_500_000_000)
        .unwrap();
    s.delete(&|k: &str| k.starts_with("m,h=b#"), i64::MIN, i64::MAX)
        .unwrap();
    let ours: Vec<std::path::PathBuf> = std::fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(ours.len(), 2, "a TSM file and its tombstone: {ours:?}");
    real.restart_with(|dir| {
        let shards = dir.join("data/d/autogen");
        let shard = std::fs::read_dir(&shards)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .expect("influxd's shard");
        for e in std::fs::read_dir(&shard).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        let _ = std::fs::remove_dir_all(dir.join("wal/d"));
        for f in &ours {
            std::fs::copy(f, shard.join(f.file_name().unwrap())).unwrap();
        }
    });
    let rows = real.query("d", "SELECT * FROM m");
    assert_eq!(
        rows["results"][0]["series"][0]["values"],
        serde_json::json!([[2_000_000_000i64, "a", 2]]),
        "{rows}"
    );
    let series = real.query("d", "SHOW SERIES");
    assert_eq!(
        series["results"][0]["series"][0]["values"],
        serde_json::json!([["m,h=a"]]),
        "{series}"
    );
}
