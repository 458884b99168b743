//! CRI log writer, reader and follower.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use skiff_runtime::logs::{
    LogFollower, LogOptions, LogWriter, MAX_LINE_SIZE, ReadOptions, Stream, format_rfc3339_nano,
    parse_line, read_log, rotated_path,
};

const NO_ROTATION: LogOptions = LogOptions {
    max_size_bytes: 0,
    max_files: 1,
};

fn records(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (stdout|stderr) (F|P) .*$`, with the fraction's
/// trailing zeros trimmed.
fn assert_record_format(record: &str) {
    let b = record.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    for i in [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18] {
        assert!(digit(i), "digit at {i} in {record:?}");
    }
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        assert_eq!(b[i], c, "{record:?}");
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while digit(i) {
            i += 1;
        }
        let n = i - start;
        assert!((1..=9).contains(&n), "fraction digits in {record:?}");
        assert_ne!(b[i - 1], b'0', "trailing zero in {record:?}");
    }
    assert_eq!(b[i], b'Z', "{record:?}");
    let rest = &record[i + 1..];
    assert!(
        rest.starts_with(" stdout F ")
            || rest.starts_with(" stdout P ")
            || rest.starts_with(" stderr F ")
            || rest.starts_with(" stderr P "),
        "{record:?}"
    );
}

#[test]
fn rfc3339_nano_trims_like_go() {
    let t = |secs: i64, nanos: u32| {
        Utc.timestamp_opt(secs, nanos)
            .single()
            .expect("valid timestamp")
    };
    // 2016-10-06T00:17:09Z
    let base = 1_475_713_029;
    assert_eq!(
        format_rfc3339_nano(t(base, 669_794_202)),
        "2016-10-06T00:17:09.669794202Z"
    );
    assert_eq!(
        format_rfc3339_nano(t(base, 669_794_200)),
        "2016-10-06T00:17:09.6697942Z"
    );
    assert_eq!(
        format_rfc3339_nano(t(base, 500_000_000)),
        "2016-10-06T00:17:09.5Z"
    );
    assert_eq!(
        format_rfc3339_nano(t(base, 120)),
        "2016-10-06T00:17:09.00000012Z"
    );
    assert_eq!(format_rfc3339_nano(t(base, 0)), "2016-10-06T00:17:09Z");
    assert_eq!(
        format_rfc3339_nano(t(0, 1)),
        "1970-01-01T00:00:00.000000001Z"
    );
}

#[test]
fn lines_have_the_cri_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let mut w = LogWriter::open(&path, NO_ROTATION).expect("open");
    w.write(Stream::Stdout, b"hello world\n").expect("write");
    w.write(Stream::Stderr, b"oops\n\n").expect("write");
    w.write(Stream::Stdout, b"crlf\r\n").expect("write");
    let recs = records(&path);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        assert_record_format(r);
    }
    assert!(recs[0].ends_with(" stdout F hello world"));
    assert!(recs[1].ends_with(" stderr F oops"));
    assert!(
        recs[2].ends_with(" stderr F "),
        "empty line keeps its separator"
    );
    assert!(
        recs[3].ends_with(" stdout F crlf"),
        "\\r before \\n is dropped"
    );
    let parsed = parse_line(&recs[0]).expect("parse");
    assert_eq!(parsed.stream, Stream::Stdout);
    assert!(!parsed.partial);
    assert_eq!(parsed.content, "hello world");
    assert!((Utc::now() - parsed.time).num_seconds() < 60);
}

#[test]
fn partial_lines_are_buffered_per_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let mut w = LogWriter::open(&path, NO_ROTATION).expect("open");
    w.write(Stream::Stdout, b"hel").expect("write");
    w.write(Stream::Stderr, b"e1").expect("write");
    assert!(records(&path).is_empty(), "nothing before a newline");
    w.write(Stream::Stdout, b"lo\nwor").expect("write");
    w.write(Stream::Stderr, b"\n").expect("write");
    w.write(Stream::Stdout, b"ld").expect("write");
    w.finish().expect("finish");
    let contents: Vec<String> = records(&path)
        .iter()
        .map(|r| {
            let l = parse_line(r).expect("parse");
            format!(
                "{} {} {}",
                l.stream,
                if l.partial { "P" } else { "F" },
                l.content
            )
        })
        .collect();
    assert_eq!(
        contents,
        ["stdout F hello", "stderr F e1", "stdout F world"]
    );
    // finish with nothing pending writes nothing.
    w.finish().expect("finish");
    assert_eq!(records(&path).len(), 3);
}

#[test]
fn long_lines_are_split_and_joined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let mut w = LogWriter::open(&path, NO_ROTATION).expect("open");
    let long: String = (0..40_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    // Written in odd chunks, interleaved with stderr.
    for chunk in long.as_bytes().chunks(7_000) {
        w.write(Stream::Stdout, chunk).expect("write");
        w.write(Stream::Stderr, b"e\n").expect("write");
    }
    w.write(Stream::Stdout, b"\n").expect("write");
    let exact = "x".repeat(MAX_LINE_SIZE);
    w.write(Stream::Stdout, format!("{exact}\n").as_bytes())
        .expect("write");

    let recs: Vec<_> = records(&path)
        .iter()
        .map(|r| parse_line(r).expect("parse"))
        .filter(|l| l.stream == Stream::Stdout)
        .collect();
    let tags: Vec<bool> = recs.iter().map(|l| l.partial).collect();
    assert_eq!(tags, [true, true, false, false]);
    assert_eq!(recs[0].content.len(), MAX_LINE_SIZE);
    assert_eq!(recs[1].content.len(), MAX_LINE_SIZE);
    assert_eq!(recs[2].content.len(), 40_000 - 2 * MAX_LINE_SIZE);
    assert_eq!(
        recs[3].content.len(),
        MAX_LINE_SIZE,
        "exactly max: one F record"
    );

    let lines = read_log(&path, &ReadOptions::default()).expect("read");
    let out: Vec<_> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .collect();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].content, long);
    assert!(!out[0].partial);
    assert_eq!(out[1].content, exact);
    assert_eq!(
        lines.iter().filter(|l| l.stream == Stream::Stderr).count(),
        6
    );
}

#[test]
fn rotation_keeps_max_files_and_bounds_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let opts = LogOptions {
        max_size_bytes: 1000,
        max_files: 3,
    };
    let mut w = LogWriter::open(&path, opts).expect("open");
    for i in 0..300 {
        w.write(Stream::Stdout, format!("line {i:04}\n").as_bytes())
            .expect("write");
    }
    assert!(path.exists());
    assert!(rotated_path(&path, 1).exists());
    assert!(rotated_path(&path, 2).exists());
    assert!(!rotated_path(&path, 3).exists());
    let files = std::fs::read_dir(dir.path()).expect("readdir").count();
    assert_eq!(files, 3);
    for p in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
        let len = std::fs::metadata(&p).expect("stat").len();
        assert!(len <= 1000, "{} is {len} bytes", p.display());
    }
    let all = read_log(
        &path,
        &ReadOptions {
            include_rotated: true,
            ..Default::default()
        },
    )
    .expect("read");
    // The newest lines, contiguous and in order, ending with the last one.
    assert!(all.len() > 40 && all.len() < 100, "{}", all.len());
    let first: usize = all[0].content[5..].parse().expect("number");
    for (k, l) in all.iter().enumerate() {
        assert_eq!(l.content, format!("line {:04}", first + k));
    }
    assert_eq!(all.last().map(|l| l.content.as_str()), Some("line 0299"));
    let live = read_log(&path, &ReadOptions::default()).expect("read");
    assert!(live.len() < all.len());

    // Reopening appends to the live file and keeps rotating.
    let mut w = LogWriter::open(&path, opts).expect("reopen");
    for i in 0..100 {
        w.write(Stream::Stderr, format!("more {i:04}\n").as_bytes())
            .expect("write");
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("readdir").count(), 3);

    // max_files 1: the live file is truncated, nothing rotated.
    let single = dir.path().join("single.log");
    let mut w = LogWriter::open(
        &single,
        LogOptions {
            max_size_bytes: 500,
            max_files: 1,
        },
    )
    .expect("open");
    for i in 0..100 {
        w.write(Stream::Stdout, format!("x {i}\n").as_bytes())
            .expect("write");
    }
    assert!(std::fs::metadata(&single).expect("stat").len() <= 500);
    assert!(!rotated_path(&single, 1).exists());
}

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid")
}

#[test]
fn tail_and_since() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let mut text = String::new();
    for i in 0..10 {
        let t = format_rfc3339_nano(ts(i));
        if i == 4 {
            // Line 4 comes in two pieces.
            text.push_str(&format!("{t} stdout P line \n"));
            text.push_str(&format!(
                "{} stdout F 4\n",
                format_rfc3339_nano(ts(i) + chrono::Duration::milliseconds(5))
            ));
        } else {
            text.push_str(&format!("{t} stdout F line {i}\n"));
        }
    }
    text.push_str("garbage that is not a record\n");
    std::fs::write(&path, text).expect("write");

    let all = read_log(&path, &ReadOptions::default()).expect("read");
    assert_eq!(all.len(), 10);
    assert_eq!(all[4].content, "line 4");
    assert_eq!(
        all[4].time,
        ts(4),
        "a joined line has its first piece's time"
    );

    let tail = read_log(
        &path,
        &ReadOptions {
            tail: Some(3),
            ..Default::default()
        },
    )
    .expect("read");
    let c: Vec<_> = tail.iter().map(|l| l.content.as_str()).collect();
    assert_eq!(c, ["line 7", "line 8", "line 9"]);

    let since = read_log(
        &path,
        &ReadOptions {
            since: Some(ts(6)),
            ..Default::default()
        },
    )
    .expect("read");
    assert_eq!(since.len(), 4);
    assert_eq!(since[0].content, "line 6");

    let both = read_log(
        &path,
        &ReadOptions {
            since: Some(ts(2)),
            tail: Some(100),
            include_rotated: true,
        },
    )
    .expect("read");
    assert_eq!(both.len(), 8);

    let none = read_log(
        &path,
        &ReadOptions {
            tail: Some(0),
            ..Default::default()
        },
    )
    .expect("read");
    assert!(none.is_empty());

    assert!(read_log(dir.path().join("missing.log"), &ReadOptions::default()).is_err());
}

#[test]
fn parse_errors_are_clear() {
    assert!(parse_line("not a timestamp stdout F x").is_err());
    assert!(parse_line("2016-10-06T00:17:09Z stdin F x").is_err());
    let err = parse_line("2016-10-06T00:17:09Z stdout X x").expect_err("tag");
    assert!(err.to_string().contains("tag"), "{err}");
    let l = parse_line("2016-10-06T00:17:09.5Z stderr P:extra spaced  content\n").expect("ok");
    assert!(l.partial);
    assert_eq!(l.content, "spaced  content");
    assert_eq!(l.stream, Stream::Stderr);
    let l = parse_line("2016-10-06T00:17:09Z stdout F").expect("no content");
    assert_eq!(l.content, "");
}

#[test]
fn follower_yields_new_lines_across_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    // Rotation only when asked (max_size 0), keeping one rotated file.
    let opts = LogOptions {
        max_size_bytes: 0,
        max_files: 2,
    };
    let mut w = LogWriter::open(&path, opts).expect("open");
    w.write(Stream::Stdout, b"before\n").expect("write");

    let mut from_start = LogFollower::open(&path, true).expect("follow");
    let mut from_now = LogFollower::open(&path, false).expect("follow");
    assert_eq!(from_start.poll().expect("poll").len(), 1);
    assert!(from_now.poll().expect("poll").is_empty());

    w.write(Stream::Stdout, b"one\ntw").expect("write");
    let got: Vec<String> = from_now
        .poll()
        .expect("poll")
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(got, ["one"]);
    w.write(Stream::Stdout, b"o\n").expect("write");
    let long = "z".repeat(MAX_LINE_SIZE + 10);
    w.write(Stream::Stdout, long.as_bytes()).expect("write");
    let got: Vec<String> = from_now
        .poll()
        .expect("poll")
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(got, ["two"], "an unfinished long line is not yielded yet");
    w.write(Stream::Stdout, b"\nlast before rotation\n")
        .expect("write");
    w.rotate().expect("rotate");
    w.write(Stream::Stderr, b"after rotation\n").expect("write");
    let got: Vec<String> = from_now
        .poll()
        .expect("poll")
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(got.len(), 3, "lines after rotation");
    assert!(got[0] == long, "the long line is joined");
    assert_eq!(got[1..], ["last before rotation", "after rotation"]);
    assert!(rotated_path(&path, 1).exists());
    assert!(from_now.poll().expect("poll").is_empty());

    // A follower started before the file exists picks it up.
    let later = dir.path().join("later.log");
    let mut f = LogFollower::open(&later, false).expect("follow");
    assert!(f.poll().expect("poll").is_empty());
    let mut w2 = LogWriter::open(&later, NO_ROTATION).expect("open");
    w2.write(Stream::Stdout, b"hi\n").expect("write");
    let got: Vec<String> = f
        .poll()
        .expect("poll")
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(got, ["hi"]);
}
