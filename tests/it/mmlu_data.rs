//! `lmcache-e2e setup data`: the shared MMLU archive, idempotence, and
//! hostile archives built here, refused without leaving anything behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn shared_archive() -> PathBuf {
    let p = mmlu_data();
    assert!(
        p.exists(),
        "the shared MMLU archive is expected at {}",
        p.display()
    );
    p
}

fn setup_data(archive: &Path, into: &Path) -> std::process::Output {
    run(
        bin()
            .args(["setup", "data", "--archive"])
            .arg(archive)
            .arg("--into")
            .arg(into),
        LIMIT,
    )
}

fn sha(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_shared_archive_extracts_once_and_is_left_untouched() {
    let dir = tempdir();
    // Work on a copy so the test can also change it.
    let archive = dir.path().join("data.tar.xz");
    std::fs::copy(shared_archive(), &archive).unwrap();
    let before = sha(&archive);
    let into = dir.path().join("mmlu");

    let out = setup_data(&archive, &into);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("extracted") && stdout.contains("57 subjects"),
        "{stdout}"
    );
    let tests = std::fs::read_dir(into.join("data/test")).unwrap().count();
    assert_eq!(tests, 57);
    assert!(into.join("data/dev/abstract_algebra_dev.csv").is_file());
    assert_eq!(sha(&archive), before, "the archive is never modified");
    assert!(archive.exists());

    // Second run: nothing to do, and the files are not rewritten.
    let marker = into.join("data/test/marker");
    std::fs::write(&marker, "x").unwrap();
    let out = setup_data(&archive, &into);
    assert!(
        text(&out).0.contains("already up to date"),
        "{}",
        text(&out).0
    );
    assert!(marker.exists(), "a no-op leaves the directory alone");

    // A changed archive re-extracts.
    let staging = tempdir();
    let status = std::process::Command::new("tar")
        .args(["-xJf"])
        .arg(&archive)
        .arg("-C")
        .arg(staging.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(staging.path().join("data/test/virology_test.csv")).unwrap();
    let status = std::process::Command::new("tar")
        .args(["-cJf"])
        .arg(&archive)
        .arg("-C")
        .arg(staging.path())
        .arg("data")
        .status()
        .unwrap();
    assert!(status.success());
    let out = setup_data(&archive, &into);
    assert!(
        text(&out).0.contains("extracted") && text(&out).0.contains("56 subjects"),
        "{}",
        text(&out).0
    );
    assert!(!marker.exists(), "re-extraction replaced the directory");
    assert_eq!(
        std::fs::read_dir(&into).unwrap().count(),
        2,
        "only data/ and the stamp remain"
    );
}

#[test]
fn an_extracted_directory_is_used_as_it_is() {
    let dir = tempdir();
    let status = std::process::Command::new("tar")
        .args(["-xJf"])
        .arg(shared_archive())
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = setup_data(&dir.path().join("data"), &dir.path().join("unused"));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("57 subjects"));
    assert!(!dir.path().join("unused").exists());
}

/// Name, type, link target and contents of one raw tar entry.
type Entry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// A tar.xz whose entries are written header by header, so paths the tar
/// crate's safe setters refuse can be put in.
fn hostile(path: &Path, entries: &[Entry]) {
    let file = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(xz2::write::XzEncoder::new(file, 6));
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

const OK: Entry = (
    "data/test/a_test.csv",
    tar::EntryType::Regular,
    "",
    b"q,a,b,c,d,A\n",
);

#[test]
fn hostile_archives_are_refused_and_leave_nothing_behind() {
    use tar::EntryType::{Block, Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "traversal",
            vec![OK, ("data/../../evil.txt", Regular, "", b"x")],
            "climbs out",
        ),
        (
            "absolute",
            vec![OK, ("/tmp/lmcache-e2e-evil.txt", Regular, "", b"x")],
            "absolute path",
        ),
        (
            "symlink-escape",
            vec![OK, ("data/esc", Symlink, "../../..", b"")],
            "symlink pointing outside",
        ),
        (
            "symlink-abs",
            vec![OK, ("data/esc", Symlink, "/etc", b"")],
            "symlink pointing outside",
        ),
        (
            "through-symlink",
            vec![
                OK,
                ("data/in", Symlink, ".", b""),
                ("data/in/x", Regular, "", b"x"),
            ],
            "goes through the symlink",
        ),
        (
            "hardlink-escape",
            vec![OK, ("data/h", Link, "../../etc/passwd", b"")],
            "hardlink",
        ),
        (
            "hardlink-abs",
            vec![OK, ("data/h", Link, "/etc/passwd", b"")],
            "hardlink",
        ),
        (
            "device",
            vec![OK, ("data/dev0", Block, "", b"")],
            "special file",
        ),
    ];
    for (name, entries, why) in cases {
        let dir = tempdir();
        let archive = dir.path().join(format!("{name}.tar.xz"));
        hostile(&archive, &entries);
        let into = dir.path().join("into");
        let out = setup_data(&archive, &into);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
        assert!(
            stderr.contains("refused") && stderr.contains(why),
            "{name}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&into)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
        assert!(!Path::new("/tmp/lmcache-e2e-evil.txt").exists());
    }
}

#[test]
fn truncated_corrupt_and_empty_archives_get_a_clear_error() {
    let dir = tempdir();
    let good = std::fs::read(shared_archive()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "corrupt or truncated",
        ),
        (
            "garbage",
            b"this is not xz at all".repeat(10),
            "corrupt or truncated",
        ),
        ("empty", Vec::new(), "data.tar.xz"),
    ];
    for (name, bytes, why) in cases {
        let archive = dir.path().join(name).join("data.tar.xz");
        std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
        std::fs::write(&archive, &bytes).unwrap();
        let into = dir.path().join(name).join("into");
        let out = setup_data(&archive, &into);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert_eq!(
            std::fs::read_dir(&into).map(|d| d.count()).unwrap_or(0),
            0,
            "{name}: nothing left behind"
        );
    }
}

#[test]
fn a_tar_bomb_is_refused_before_it_fills_the_disk() {
    let dir = tempdir();
    let archive = dir.path().join("data.tar.xz");
    let file = std::fs::File::create(&archive).unwrap();
    let mut tar = tar::Builder::new(xz2::write::XzEncoder::new(file, 6));
    for i in 0..6_000 {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("data/test/s{i}_test.csv"),
            std::io::empty(),
        )
        .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    let into = dir.path().join("into");
    let out = setup_data(&archive, &into);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("past 5000 entries"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&into).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing left behind"
    );
    // Through `ci`: refused before any engine starts.
    let results_dir = dir.path().join("r");
    let data = format!("tests.mmlu.data={}", archive.display());
    let out = run(
        ci_sim(&results_dir, &[&data]).args(["--only", "mmlu"]),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    // A test's own input file: exit 2, as a bad prompts file is.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("past 5000 entries"), "{stderr}");
    assert!(!stderr.contains("started engine"), "{stderr}");
    assert_eq!(results(&results_dir)["engines"], serde_json::json!([]));
}
