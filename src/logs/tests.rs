//! Unit tests of the log decoders and the store index, on byte fixtures.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::decode::{Decoder, LogEntry, Step};
use super::store::LogSet;
use super::{Format, LogSource, Stream};

fn json(stream: &str, log: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"log": log, "stream": stream, "time": "2026-11-30T22:00:00.000000000Z"})
    )
}

fn local(stream: &str, line: &[u8], partial: bool) -> Vec<u8> {
    local_piece(stream, line, partial, None)
}

/// A `local` record as Docker writes a piece of a split line: `partial` set on every piece,
/// `last` in the metadata of the last one.
fn local_piece(stream: &str, line: &[u8], partial: bool, last: Option<bool>) -> Vec<u8> {
    let e = LogEntry {
        source: stream.into(),
        time_nano: 1,
        line: line.to_vec(),
        partial,
        meta: last.map(|last| super::decode::PartialMeta {
            last,
            id: "a1".into(),
            ordinal: 1,
        }),
    };
    let body = prost::Message::encode_to_vec(&e);
    let n = (body.len() as u32).to_be_bytes();
    [&n[..], &body, &n].concat()
}

/// Every record's (stream, text) and every skip reason, decoding `buf` to its end.
fn decode_all(format: Format, buf: &[u8]) -> (Vec<(Stream, Vec<u8>)>, Vec<&'static str>) {
    let mut d = Decoder::new(format);
    let (mut recs, mut skips, mut at) = (Vec::new(), Vec::new(), 0);
    loop {
        match d.next(&buf[at..], true) {
            Step::More => break,
            Step::Rec { used, stream, text } => {
                recs.push((stream, text.into_owned()));
                at += used;
            }
            Step::Skip { used, reason } => {
                skips.push(reason);
                at += used;
            }
        }
    }
    (recs, skips)
}

#[test]
fn json_file_records_and_split_lines() {
    let buf = [
        json("stdout", "hello\n"),
        json("stderr", "oops \"quoted\"\n"),
        json("stdout", "first half "),
        json("stdout", "second half\n"),
    ]
    .concat();
    let (recs, skips) = decode_all(Format::JsonFile, buf.as_bytes());
    assert!(skips.is_empty());
    let out: Vec<u8> = recs
        .iter()
        .filter(|r| r.0 == Stream::Stdout)
        .flat_map(|r| r.1.clone())
        .collect();
    assert_eq!(out, b"hello\nfirst half second half\n");
    assert_eq!(recs[1], (Stream::Stderr, b"oops \"quoted\"\n".to_vec()));
}

#[test]
fn json_file_corruption_is_skipped_or_passed_through() {
    let mut buf = json("stdout", "a\n").into_bytes();
    buf.extend_from_slice(&[0; 300]);
    buf.extend_from_slice(json("stdout", "b\n").as_bytes());
    buf.extend_from_slice(b"{\"log\":\"bad \xff byte\\n\",\"stream\":\"stdout\"}\n");
    buf.extend_from_slice(b"not json at all\n");
    buf.extend_from_slice(json("stdout", "c\n").as_bytes());
    buf.extend_from_slice(b"{\"log\":\"cut sho");
    let (recs, skips) = decode_all(Format::JsonFile, &buf);
    let texts: Vec<_> = recs
        .iter()
        .map(|r| String::from_utf8_lossy(&r.1).into_owned())
        .collect();
    assert_eq!(texts, ["a\n", "b\n", "bad \u{fffd} byte\n", "c\n"]);
    assert_eq!(
        skips,
        [
            "a run of NUL bytes",
            "a line that is not a JSON log record",
            "a truncated last record"
        ]
    );
    // Not at the end of the file: the cut-short record is waited for.
    let mut d = Decoder::new(Format::JsonFile);
    assert_eq!(d.next(b"{\"log\":\"cut sho", false), Step::More);
}

#[test]
fn oversize_records_are_skipped_whole() {
    let mut buf = vec![b'x'; super::decode::MAX_RECORD + 10];
    buf.push(b'\n');
    buf.extend_from_slice(json("stdout", "after\n").as_bytes());
    let (recs, skips) = decode_all(Format::JsonFile, &buf);
    assert_eq!(recs, [(Stream::Stdout, b"after\n".to_vec())]);
    assert!(
        skips.iter().all(|s| *s == "a record over 1 MiB"),
        "{skips:?}"
    );
}

#[test]
fn cri_records_partials_and_empty_lines() {
    let buf = b"2026-11-30T22:00:00.1Z stdout P part one \n\
2026-11-30T22:00:00.2Z stdout F and two\n\
2026-11-30T22:00:00.3Z stderr F err line\n\
2026-11-30T22:00:00.4Z stdout F\n\
garbage\n\
2026-11-30T22:00:00.5Z stdout F raw \xff kept\n";
    let (recs, skips) = decode_all(Format::Cri, buf);
    assert_eq!(skips, ["a line that is not a CRI log record"]);
    let out: Vec<u8> = recs
        .iter()
        .filter(|r| r.0 == Stream::Stdout)
        .flat_map(|r| r.1.clone())
        .collect();
    assert_eq!(out, b"part one and two\n\nraw \xff kept\n");
    assert_eq!(recs[2], (Stream::Stderr, b"err line\n".to_vec()));
}

#[test]
fn local_records_partials_and_corruption() {
    let mut buf = [
        local("stdout", b"out1", false),
        local("stderr", b"err1", false),
        local("stdout", b"half ", true),
        local("stdout", b"done", false),
    ]
    .concat();
    buf.extend_from_slice(&[0; 64]);
    buf.extend_from_slice(&local("stdout", b"after nuls", false));
    let cut = local("stdout", b"truncated", false);
    buf.extend_from_slice(&cut[..cut.len() - 3]);
    let (recs, skips) = decode_all(Format::Local, &buf);
    let all: Vec<u8> = recs.iter().flat_map(|r| r.1.clone()).collect();
    assert_eq!(all, b"out1\nerr1\nhalf done\nafter nuls\n");
    assert_eq!(skips, ["a run of NUL bytes", "a truncated last record"]);
    // As Docker 20.10 writes a split line: `partial` on every piece, `last` in the metadata of
    // the final one, after which the container's newline belongs; a trailing piece that is
    // not the last (the container's output ends without a newline) gets none.
    let split = [
        local_piece("stdout", b"long ", true, Some(false)),
        local_piece("stdout", b"line", true, Some(true)),
        local_piece("stdout", b"next", false, None),
        local_piece("stdout", b"no newline", true, Some(false)),
    ]
    .concat();
    let (recs, _) = decode_all(Format::Local, &split);
    let all: Vec<u8> = recs.iter().flat_map(|r| r.1.clone()).collect();
    assert_eq!(all, b"long line\nnext\nno newline");
    assert!(matches!(
        Decoder::new(Format::Local).next(&[0, 0, 0, 5, 1], false),
        Step::More
    ));
}

fn set(dir: &Path, format: Format) -> LogSet {
    LogSet::new(
        LogSource::Files {
            format,
            path: dir.join("c.log"),
            owner: rustix::process::geteuid().as_raw(),
        },
        "test".into(),
    )
}

fn read_all(s: &LogSet, stream: Stream) -> Vec<u8> {
    let (size, _) = s.size(stream);
    let mut buf = vec![0; size as usize + 10];
    let n = s.read(stream, 0, &mut buf).unwrap();
    buf.truncate(n);
    assert_eq!(n as u64, size, "stat size equals what read returns");
    buf
}

#[test]
fn rotations_are_read_oldest_first_with_gz_and_random_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json("stdout", "one\n").as_bytes()).unwrap();
    fs::write(d.join("c.log.2.gz"), gz.finish().unwrap()).unwrap();
    fs::write(d.join("c.log.1"), json("stderr", "two\n")).unwrap();
    let mut live = String::new();
    for i in 0..20000 {
        live.push_str(&json(
            if i % 3 == 0 { "stderr" } else { "stdout" },
            &format!("line {i}\n"),
        ));
    }
    live.push_str("{\"log\":\"incomplete"); // being written
    fs::write(d.join("c.log"), &live).unwrap();
    fs::write(d.join("other.log"), json("stdout", "not ours\n")).unwrap();
    let s = set(d, Format::JsonFile);
    assert_eq!(s.refresh(), None);
    let all = read_all(&s, Stream::All);
    let mut want = String::from("one\ntwo\n");
    for i in 0..20000 {
        want.push_str(&format!("line {i}\n"));
    }
    assert_eq!(String::from_utf8(all.clone()).unwrap(), want);
    let err = read_all(&s, Stream::Stderr);
    assert!(err.starts_with(b"two\nline 0\nline 3\n"));
    // Sequential reads in odd-sized pieces, two streams interleaved (the read cursor), and
    // reads at arbitrary offsets (the index's marks) agree with the whole.
    let out = read_all(&s, Stream::Stdout);
    let (mut got_all, mut got_out) = (Vec::new(), Vec::new());
    let mut b = vec![0; 4093];
    loop {
        let n = s.read(Stream::All, got_all.len() as u64, &mut b).unwrap();
        got_all.extend_from_slice(&b[..n]);
        let m = s
            .read(Stream::Stdout, got_out.len() as u64, &mut b[..1000])
            .unwrap();
        got_out.extend_from_slice(&b[..m]);
        if n == 0 && m == 0 {
            break;
        }
    }
    assert_eq!(got_all, all);
    assert_eq!(got_out, out);
    let mut back = vec![0; 50];
    let n = s.read(Stream::All, 3, &mut back).unwrap();
    assert_eq!(&back[..n], &all[3..53], "a read behind the cursor");
    for off in [0usize, 1, 7, 65_535, 100_000, all.len() - 5] {
        let mut b = vec![0; 777];
        let n = s.read(Stream::All, off as u64, &mut b).unwrap();
        assert_eq!(&b[..n], &all[off..(off + 777).min(all.len())], "at {off}");
    }
}

#[test]
fn growth_and_rotation_keep_offsets_for_a_holder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("c.log"), json("stdout", "a\n")).unwrap();
    let s = set(d, Format::JsonFile);
    s.refs.store(1, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(s.refresh(), None);
    assert_eq!(read_all(&s, Stream::Stdout), b"a\n");
    // The runtime rotates: c.log -> c.log.1 (then compressed), a new c.log, the old one deleted.
    fs::rename(d.join("c.log"), d.join("c.log.1")).unwrap();
    fs::write(d.join("c.log"), json("stdout", "b\n")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    s.refresh();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json("stdout", "a\n").as_bytes()).unwrap();
    fs::write(d.join("c.log.1.gz"), gz.finish().unwrap()).unwrap();
    fs::remove_file(d.join("c.log.1")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    s.refresh();
    assert_eq!(
        read_all(&s, Stream::Stdout),
        b"a\nb\n",
        "no repeat, no loss"
    );
    fs::remove_file(d.join("c.log.1.gz")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    s.refresh();
    assert_eq!(
        read_all(&s, Stream::Stdout),
        b"a\nb\n",
        "held while referenced"
    );
}

#[test]
fn symlinked_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::os::unix::fs::symlink("/etc/passwd", d.join("c.log")).unwrap();
    let s = set(d, Format::Cri);
    let why = s.refresh().expect("refused");
    assert!(
        why.contains("refused") && why.contains("symbolic link"),
        "{why}"
    );
    assert_eq!(s.size(Stream::All).0, 0);
    let linked = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(d, linked.path().join("dir")).unwrap();
    let s = set(&linked.path().join("dir"), Format::Cri);
    assert!(s.refresh().expect("refused").contains("symbolic link"));
}

#[test]
fn sources_from_runtime_facts() {
    use std::collections::HashMap;
    let labels = |kv: &[(&str, &str)]| -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let k8s = labels(&[
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.name", "api-1"),
        ("io.kubernetes.pod.uid", "u-1"),
        ("io.kubernetes.container.name", "app"),
    ]);
    assert_eq!(
        super::containerd_source(&k8s, "c1"),
        Some(LogSource::Files {
            format: Format::Cri,
            path: "/var/log/pods/shop_api-1_u-1/app/0.log".into(),
            owner: 0
        })
    );
    let nerdctl = labels(&[(
        "nerdctl/state-dir",
        "/var/lib/nerdctl/1935db59/containers/default/c2",
    )]);
    assert_eq!(
        super::containerd_source(&nerdctl, "c2"),
        Some(LogSource::Files {
            format: Format::JsonFile,
            path: "/var/lib/nerdctl/1935db59/containers/default/c2/c2-json.log".into(),
            owner: 0
        })
    );
    assert_eq!(super::containerd_source(&labels(&[]), "c3"), None);
    let bad = labels(&[
        ("io.kubernetes.pod.namespace", ".."),
        ("io.kubernetes.pod.name", "p"),
        ("io.kubernetes.container.name", "c"),
    ]);
    assert!(matches!(
        super::containerd_source(&bad, "c4"),
        Some(LogSource::Unavailable(_))
    ));
    assert!(matches!(
        super::docker_source("none", "", "/var/lib/docker/containers/x", 0, false),
        LogSource::Unavailable(_)
    ));
    assert_eq!(
        super::docker_source("local", "", "/d/x", 0, false),
        LogSource::Files {
            format: Format::Local,
            path: "/d/x/local-logs/container.log".into(),
            owner: 0
        }
    );
    assert_eq!(
        super::docker_source("journald", "", "/d/x", 0, false),
        LogSource::Files {
            format: Format::Local,
            path: "/d/x/container-cached.log".into(),
            owner: 0
        }
    );
    assert!(matches!(
        super::docker_source("journald", "", "/d/x", 1000, true),
        LogSource::Unavailable(_)
    ));
    assert_eq!(
        super::docker_source("json-file", "/p/ctr.log", "/p", 1000, true),
        LogSource::Files {
            format: Format::Cri,
            path: "/p/ctr.log".into(),
            owner: 1000
        }
    );
}

#[test]
fn json_fast_path_agrees_with_serde() {
    let logs = [
        "plain\n",
        "tab\tquote\" backslash\\ slash/ <html> & \u{e9}t\u{e9} \u{1F600}\n",
        "control \u{1} \u{8} \u{c}",
        "",
    ];
    for log in logs {
        for stream in ["stdout", "stderr"] {
            let line = json(stream, log);
            let body = &line.as_bytes()[..line.len() - 1];
            let fast = super::decode::json_fast(body);
            let full = super::decode::json_full(body);
            assert_eq!(
                fast.as_ref().map(|(s, t)| (*s, t.to_vec())),
                full.ok().map(|(s, t)| (s, t.to_vec())),
                "{log:?}"
            );
            assert!(fast.is_some(), "{log:?}");
        }
    }
    // Go's encoder escapes <, > and & as \u003c...; a surrogate pair goes to serde.
    let go = br#"{"log":"\u003ca\u003e \u0026 \ud83d\ude00\n","stream":"stdout","time":"x"}"#;
    assert!(super::decode::json_fast(go).is_none());
    let (_, t) = super::decode::json_full(go).unwrap();
    assert_eq!(&*t, "<a> & \u{1F600}\n".as_bytes());
    let go = br#"{"log":"\u003ca\u003e\n","stream":"stderr","time":"x"}"#;
    assert_eq!(
        super::decode::json_fast(go).map(|(s, t)| (s, t.to_vec())),
        Some((Stream::Stderr, b"<a>\n".to_vec()))
    );
    // Invalid UTF-8 is left to the full decoder (which replaces it).
    assert!(super::decode::json_fast(b"{\"log\":\"\xff\",\"stream\":\"stdout\"}").is_none());
}

/// A sequential reader whose reads end inside records (the rest of the record is carried to
/// the next read) and inside the raw bytes read ahead, with a re-read of the same offset and
/// a step back between, gets exactly the whole text.
#[test]
fn reads_that_stop_inside_records_carry_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = String::new();
    for i in 0..600 {
        let long = "y".repeat(i % 50 * 400);
        live.push_str(&json("stdout", &format!("line {i} {long}\n")));
        live.push_str(&json("stderr", &format!("err {i}\n")));
    }
    fs::write(dir.path().join("c.log"), &live).unwrap();
    let s = set(dir.path(), Format::JsonFile);
    assert_eq!(s.refresh(), None);
    for stream in [Stream::All, Stream::Stdout, Stream::Stderr] {
        let whole = read_all(&s, stream);
        for piece in [1, 5, 4096, 131_072] {
            let mut got = Vec::new();
            let mut b = vec![0; piece];
            loop {
                let n = s.read(stream, got.len() as u64, &mut b).unwrap();
                if n == 0 {
                    break;
                }
                // Again at the same offset (a retried request), and now and then a little behind.
                assert_eq!(s.read(stream, got.len() as u64, &mut b).unwrap(), n);
                if got.len() % 97 == 0 {
                    let back = got.len().saturating_sub(3);
                    let m = s.read(stream, back as u64, &mut b[..1]).unwrap();
                    assert_eq!(&b[..m], &whole[back..back + m]);
                }
                let n = s.read(stream, got.len() as u64, &mut b).unwrap();
                got.extend_from_slice(&b[..n]);
                if piece < 4096 && got.len() > 20_000 {
                    got.extend_from_slice(&whole[got.len()..]);
                }
            }
            assert!(got == whole, "{stream:?} in pieces of {piece}");
        }
    }
}

/// A `.gz` rotation that decompresses to more than `MAX_GZ` (a planted gzip bomb: a rootless
/// user controls their logs' directory) is left out with a reason and the rest is served.
#[test]
fn a_gz_rotation_over_the_limit_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bomb = d.join("c.log.1.gz");
    let sh = format!(
        "head -c {} /dev/zero | gzip -1 > {}",
        super::scan::MAX_GZ + 1,
        bomb.display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &sh])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let e = super::scan::decompress(&fs::File::open(&bomb).unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge, "{e}");
    assert!(e.to_string().contains("more than 128 MiB"), "{e}");
    fs::write(d.join("c.log"), json("stdout", "live\n")).unwrap();
    let s = set(d, Format::JsonFile);
    assert_eq!(s.refresh(), None);
    assert_eq!(read_all(&s, Stream::All), b"live\n");
    // Refused for good: a second look does not decompress it again.
    let t = std::time::Instant::now();
    s.refresh();
    assert_eq!(read_all(&s, Stream::All), b"live\n");
    assert!(t.elapsed() < std::time::Duration::from_millis(500));
}

/// A user's store must lie below the user's home directory, as the user's layers: a rootless
/// runtime's endpoint that names `/tmp/...` (or `/etc`) as a log directory is refused.
#[test]
fn a_users_store_outside_their_home_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A uid with no account: no home directory, so no path is below it.
    let e = super::open::open_dir(dir.path(), 4_242_424).unwrap_err();
    assert!(
        matches!(&e, super::open::OpenError::Refused(why) if why.contains("refused")),
        "{e}"
    );
    // Root's stores are not confined (the runtimes' own directories).
    assert!(super::open::open_dir(dir.path(), 0).is_ok());
}

/// A filesystem mounted on the store file itself (a rootless user may mount a FUSE filesystem
/// of theirs on a regular file they own with `fusermount3`, then stop answering) is refused
/// with `EXDEV` before it is asked anything. A bind mount stands in for the user's FUSE mount.
#[test]
fn a_mount_on_the_store_file_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("c.log"), "2024-01-01T00:00:00Z stdout F store\n").unwrap();
    let other = tempfile::tempdir().unwrap();
    let planted = other.path().join("f");
    std::fs::write(&planted, "2024-01-01T00:00:00Z stdout F planted\n").unwrap();
    let s = set(d, Format::Cri);
    assert!(s.refresh().is_none());
    assert_eq!(read_all(&s, Stream::Stdout), b"store\n");
    let bind = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&planted)
        .arg(d.join("c.log"))
        .status()
        .unwrap();
    assert!(bind.success());
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _umount = Umount(d.join("c.log"));
    let s = set(d, Format::Cri);
    let why = s.refresh().expect("refused");
    assert!(why.contains("refused") && why.contains("mounted"), "{why}");
    assert_eq!(s.size(Stream::All).0, 0);
}
