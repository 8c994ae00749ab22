//! Behaviour tests for the WAL: round trips, rolling, release, crash repair, corruption.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::segment::{parse_segment_name, scan};
use super::*;

const META: &[u8] = b"member=8e9e05c52164694d,cluster=cdf818194e3a8c32";

fn tiny() -> WalOptions {
    WalOptions { segment_size: 512 }
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| ((k as u64 * 31 + i) % 251) as u8 + 1)
        .collect()
}

fn entry(i: u64) -> Record {
    Record::Entry {
        index: i,
        term: 1 + i / 10,
        data: payload(i, (i as usize * 37) % 200),
    }
}

fn entry_len(i: u64, len: usize) -> Record {
    Record::Entry {
        index: i,
        term: 1,
        data: payload(i, len),
    }
}

fn wal_dir(t: &TempDir) -> PathBuf {
    t.path().join("member").join("wal")
}

fn seg_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .filter(|n| n.ends_with(".wal"))
        .collect();
    v.sort();
    v
}

fn seg_paths(dir: &Path) -> Vec<PathBuf> {
    seg_names(dir).into_iter().map(|n| dir.join(n)).collect()
}

fn dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().into_string().expect("utf8"),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).expect("metadata").len()
}

fn with_meta(recs: &[Record]) -> Vec<Record> {
    let mut v = vec![Record::Metadata(META.to_vec())];
    v.extend_from_slice(recs);
    v
}

/// Appends records one by one with a sync after each and returns the segment length after
/// each one: the record boundaries (the first segment must not roll).
fn append_with_boundaries(wal: &mut Wal, recs: &[Record]) -> Vec<u64> {
    let seg = wal.current_path();
    let mut b = vec![file_len(&seg)];
    for r in recs {
        wal.append(std::slice::from_ref(r)).expect("append");
        wal.sync().expect("sync");
        b.push(file_len(&seg));
    }
    assert_eq!(wal.segments.len(), 1, "test expects one segment");
    b
}

fn set_len(p: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open")
        .set_len(len)
        .expect("set_len");
}

fn expect_corrupt(err: WalError) -> (PathBuf, u64, String) {
    match err {
        WalError::Corrupt {
            file,
            offset,
            reason,
        } => (file, offset, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn round_trip_all_record_kinds() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    assert!(!Wal::exists(&dir));
    let recs = vec![
        entry(1),
        Record::HardState {
            term: 1,
            vote: 3,
            commit: 1,
        },
        Record::Entry {
            index: 2,
            term: 1,
            data: Vec::new(),
        },
        Record::Snapshot { index: 1, term: 1 },
        Record::Entry {
            index: 3,
            term: 2,
            data: vec![0u8; 1000],
        },
        Record::HardState {
            term: 2,
            vote: 0,
            commit: 3,
        },
    ];
    let mut wal = Wal::create(&dir, META).expect("create");
    assert!(Wal::exists(&dir));
    assert_eq!(
        seg_names(&dir),
        vec!["0000000000000000-0000000000000000.wal"]
    );
    wal.append(&recs).expect("append");
    wal.sync().expect("sync");
    drop(wal);

    let (_wal, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, with_meta(&recs));
    assert_eq!(Wal::read_only(&dir).expect("read_only"), with_meta(&recs));
}

#[test]
fn fresh_wal_returns_only_metadata() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    drop(Wal::create(&dir, META).expect("create"));
    let (_w, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, vec![Record::Metadata(META.to_vec())]);
}

#[test]
fn many_appends_and_reopens_return_identical_records() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut all = Vec::new();
    let mut wal = Wal::create(&dir, META).expect("create");
    let mut next = 1u64;
    for round in 0..3 {
        let before = file_len(&wal.current_path());
        let start_bytes = wal.bytes_written();
        for batch in 0..40u64 {
            let mut recs: Vec<Record> = (0..(batch % 7)).map(|k| entry(next + k)).collect();
            next += batch % 7;
            recs.push(Record::HardState {
                term: round + 1,
                vote: 1,
                commit: next - 1,
            });
            wal.append(&recs).expect("append");
            all.extend(recs);
        }
        wal.sync().expect("sync");
        let after = file_len(&wal.current_path());
        assert_eq!(wal.bytes_written() - start_bytes, after - before);
        assert!(wal.last_sync_duration() > Duration::ZERO);
        drop(wal);
        let (w, got) = Wal::open(&dir).expect("open");
        assert_eq!(got, with_meta(&all), "round {round}");
        assert_eq!(w.bytes_written(), 0);
        wal = w;
    }
    assert_eq!(seg_names(&dir).len(), 1);
}

#[test]
fn segments_roll_and_reopen_across_segments() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    let mut all = Vec::new();
    for i in (1..=200u64).step_by(5) {
        let mut recs: Vec<Record> = (i..i + 5).map(entry).collect();
        recs.push(Record::HardState {
            term: 1,
            vote: 1,
            commit: i + 4,
        });
        wal.append(&recs).expect("append");
        all.extend(recs);
    }
    wal.sync().expect("sync");
    drop(wal);

    let names = seg_names(&dir);
    assert!(names.len() > 10, "expected many segments, got {names:?}");
    let mut prev_last_index = None;
    for (k, name) in names.iter().enumerate() {
        let (seq, first_index) = parse_segment_name(name).expect("segment name");
        assert_eq!(seq, k as u64);
        let path = dir.join(name);
        let bytes = fs::read(&path).expect("read");
        let sc = scan(&path, &bytes, k + 1 == names.len()).expect("scan");
        assert!(!sc.records.is_empty(), "segment {name} has no records");
        let entries: Vec<u64> = sc
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Entry { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        // first_index is the next index expected when the segment was started.
        let expected_first = prev_last_index.map_or(0, |l: u64| l + 1);
        assert_eq!(first_index, expected_first, "{name}");
        if let Some(first) = entries.first() {
            assert_eq!(*first, expected_first.max(1), "{name}");
        }
        if let Some(last) = entries.last() {
            prev_last_index = Some(*last);
        }
        if k + 1 < names.len() {
            assert!(
                bytes.len() as u64 >= tiny().segment_size,
                "{name} rolled early"
            );
        }
    }

    let (mut wal, got) = Wal::open_with_options(&dir, tiny()).expect("open");
    assert_eq!(got, with_meta(&all));
    let more: Vec<Record> = (201..=260).map(entry).collect();
    wal.append(&more).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    all.extend(more);
    assert!(seg_names(&dir).len() > names.len());
    let (_w, got) = Wal::open_with_options(&dir, tiny()).expect("reopen");
    assert_eq!(got, with_meta(&all));
    assert_eq!(Wal::read_only(&dir).expect("read_only"), with_meta(&all));
}

#[test]
fn release_to_deletes_the_right_segments_and_reopen_works() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    let mut all = Vec::new();
    for i in (1..=200u64).step_by(4) {
        let mut recs: Vec<Record> = (i..i + 4).map(entry).collect();
        recs.push(Record::HardState {
            term: 1,
            vote: 1,
            commit: i + 3,
        });
        if i == 121 {
            recs.push(Record::Snapshot {
                index: 100,
                term: 11,
            });
        }
        wal.append(&recs).expect("append");
        all.extend(recs);
    }
    wal.sync().expect("sync");

    // What each segment holds, straight from disk.
    let paths = seg_paths(&dir);
    let infos: Vec<(usize, Option<u64>)> = paths
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let sc = scan(p, &fs::read(p).expect("read"), k + 1 == paths.len()).expect("scan");
            (sc.records.len(), sc.max_index)
        })
        .collect();
    let expect_released = infos[..infos.len() - 1]
        .iter()
        .take_while(|(_, m)| m.is_none_or(|m| m < 100))
        .count();
    assert!(
        expect_released >= 2,
        "test needs several releasable segments"
    );
    assert!(expect_released < paths.len() - 1);

    assert_eq!(wal.release_to(0).expect("release 0"), 0);
    assert_eq!(seg_paths(&dir), paths);
    assert_eq!(wal.release_to(100).expect("release"), expect_released);
    assert_eq!(seg_paths(&dir), paths[expect_released..].to_vec());
    // The first kept segment holds an entry >= 100; every released one held only < 100.
    assert!(infos[expect_released].1.is_some_and(|m| m >= 100));

    let released_records: usize = infos[..expect_released].iter().map(|(n, _)| n).sum();
    let carried_snap = all[..released_records]
        .iter()
        .rev()
        .find(|r| matches!(r, Record::Snapshot { .. }))
        .cloned();
    let carried_hs = all[..released_records]
        .iter()
        .rev()
        .find(|r| matches!(r, Record::HardState { .. }))
        .cloned();
    assert!(carried_hs.is_some());
    let mut expected = vec![Record::Metadata(META.to_vec())];
    expected.extend(carried_snap);
    expected.extend(carried_hs);
    expected.extend_from_slice(&all[released_records..]);

    wal.append(&[entry(201)]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    expected.push(entry(201));
    let (mut wal, got) = Wal::open_with_options(&dir, tiny()).expect("open");
    assert_eq!(got, expected);

    // Releasing everything keeps the current segment, and the log stays usable.
    let before = seg_paths(&dir);
    let n = wal.release_to(u64::MAX).expect("release all");
    assert_eq!(n, before.len() - 1);
    assert_eq!(seg_paths(&dir), vec![before[before.len() - 1].clone()]);
    wal.append(&[entry(202)]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (_w, got) = Wal::open_with_options(&dir, tiny()).expect("open after full release");
    assert_eq!(got.first(), Some(&Record::Metadata(META.to_vec())));
    // The latest hard state and snapshot survive in the remaining segment's header.
    assert!(got.contains(&Record::Snapshot {
        index: 100,
        term: 11
    }));
    assert!(got.iter().any(|r| matches!(r, Record::HardState { .. })));
    assert_eq!(got.last(), Some(&entry(202)));
}

#[test]
fn torn_tail_is_truncated_and_appending_continues() {
    for cut_in_header in [false, true] {
        let t = TempDir::new().expect("tempdir");
        let dir = wal_dir(&t);
        let mut wal = Wal::create(&dir, META).expect("create");
        let recs: Vec<Record> = (1..=10).map(|i| entry_len(i, 300)).collect();
        let b = append_with_boundaries(&mut wal, &recs);
        let seg = wal.current_path();
        drop(wal);

        let cut = if cut_in_header {
            b[9] + 4
        } else {
            b[9] + (b[10] - b[9]) / 2
        };
        set_len(&seg, cut);

        // read_only reports it but leaves the file alone.
        assert_eq!(
            Wal::read_only(&dir).expect("read_only"),
            with_meta(&recs[..9])
        );
        assert_eq!(file_len(&seg), cut);

        let (mut wal, got) = Wal::open(&dir).expect("open");
        assert_eq!(got, with_meta(&recs[..9]));
        assert_eq!(
            file_len(&seg),
            b[9],
            "file truncated to the last good record"
        );

        wal.append(&[entry(10), entry(11)]).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let mut expected = recs[..9].to_vec();
        expected.extend([entry(10), entry(11)]);
        let (_w, got) = Wal::open(&dir).expect("reopen");
        assert_eq!(got, with_meta(&expected));
    }
}

#[test]
fn zero_filled_tail_is_the_end() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create(&dir, META).expect("create");
    let recs: Vec<Record> = (1..=5).map(entry).collect();
    wal.append(&recs).expect("append");
    wal.sync().expect("sync");
    let seg = wal.current_path();
    drop(wal);
    let good = file_len(&seg);
    set_len(&seg, good + 8192); // like preallocated space

    assert_eq!(Wal::read_only(&dir).expect("read_only"), with_meta(&recs));
    assert_eq!(file_len(&seg), good + 8192, "read_only must not trim");

    let (mut wal, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, with_meta(&recs));
    assert_eq!(file_len(&seg), good);
    wal.append(&[entry(6)]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (_w, got) = Wal::open(&dir).expect("reopen");
    let mut expected = recs.clone();
    expected.push(entry(6));
    assert_eq!(got, with_meta(&expected));
}

#[test]
fn flipped_byte_is_corrupt_and_nothing_is_modified() {
    // In the middle of the (only, so last) segment, and in its very last record: a CRC
    // mismatch is corruption wherever it is, not a torn write.
    for victim in [3usize, 9] {
        let t = TempDir::new().expect("tempdir");
        let dir = wal_dir(&t);
        let mut wal = Wal::create(&dir, META).expect("create");
        let recs: Vec<Record> = (1..=10).map(|i| entry_len(i, 100)).collect();
        let b = append_with_boundaries(&mut wal, &recs);
        let seg = wal.current_path();
        drop(wal);

        let mut bytes = fs::read(&seg).expect("read");
        let at = (b[victim] + 9 + 16 + 50) as usize;
        bytes[at] ^= 0x40;
        fs::write(&seg, &bytes).expect("write");
        let before = dir_bytes(&dir);

        let (file, offset, reason) = expect_corrupt(Wal::open(&dir).unwrap_err());
        assert_eq!(file, seg);
        assert_eq!(offset, b[victim], "offset of the damaged record");
        assert!(reason.contains("CRC mismatch"), "{reason}");
        assert_eq!(dir_bytes(&dir), before, "open modified a corrupt WAL");

        let err = Wal::read_only(&dir).unwrap_err();
        let msg = err.to_string();
        let (file, offset, _) = expect_corrupt(err);
        assert_eq!((file, offset), (seg.clone(), b[victim]));
        assert!(msg.contains(&seg.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("offset {}", b[victim])), "{msg}");
        assert!(msg.contains("snapshot") && msg.contains("re-add"), "{msg}");
        assert_eq!(dir_bytes(&dir), before, "read_only modified the WAL");
    }
}

#[test]
fn corruption_in_an_earlier_segment_names_that_segment() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    wal.append(&(1..=60).map(entry).collect::<Vec<_>>())
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let paths = seg_paths(&dir);
    assert!(paths.len() >= 3);
    let victim = &paths[1];
    let mut bytes = fs::read(victim).expect("read");
    let last = bytes.len() - 1; // inside the segment's last record
    bytes[last] ^= 0xff;
    fs::write(victim, &bytes).expect("write");
    let before = dir_bytes(&dir);

    for err in [
        Wal::open_with_options(&dir, tiny()).unwrap_err(),
        Wal::read_only(&dir).unwrap_err(),
    ] {
        let (file, offset, reason) = expect_corrupt(err);
        assert_eq!(&file, victim);
        assert!(offset > 0 && offset < bytes.len() as u64, "offset {offset}");
        assert!(reason.contains("CRC mismatch"), "{reason}");
    }
    assert_eq!(dir_bytes(&dir), before);
}

#[test]
fn torn_record_in_a_non_last_segment_is_corrupt() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    wal.append(&(1..=60).map(entry).collect::<Vec<_>>())
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let paths = seg_paths(&dir);
    assert!(paths.len() >= 3);
    let victim = &paths[0];
    let len = file_len(victim);
    set_len(victim, len - 3);
    let before = dir_bytes(&dir);

    for err in [
        Wal::open_with_options(&dir, tiny()).unwrap_err(),
        Wal::read_only(&dir).unwrap_err(),
    ] {
        let (file, offset, reason) = expect_corrupt(err);
        assert_eq!(&file, victim);
        assert!(
            offset < len - 3,
            "offset {offset} is the torn record's start"
        );
        assert!(reason.contains("cut short"), "{reason}");
        assert!(reason.contains("not the last"), "{reason}");
    }
    assert_eq!(dir_bytes(&dir), before);
}

#[test]
fn zero_sector_in_last_record_is_a_torn_write_but_not_in_earlier_segments() {
    // Last segment: the record overlapping a zeroed aligned sector is dropped.
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create(&dir, META).expect("create");
    let recs: Vec<Record> = (1..=4).map(|i| entry_len(i, 2000)).collect();
    let b = append_with_boundaries(&mut wal, &recs);
    let seg = wal.current_path();
    drop(wal);
    let mut bytes = fs::read(&seg).expect("read");
    let sector = (b[3] as usize / 512 + 1) * 512; // an aligned sector inside the last record
    assert!(sector + 512 <= b[4] as usize);
    bytes[sector..sector + 512].fill(0);
    fs::write(&seg, &bytes).expect("write");
    let (_w, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, with_meta(&recs[..3]));
    assert_eq!(file_len(&seg), b[3]);

    // Earlier segment: the same damage is corruption.
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal =
        Wal::create_with_options(&dir, META, WalOptions { segment_size: 4096 }).expect("create");
    wal.append(&(1..=10).map(|i| entry_len(i, 2000)).collect::<Vec<_>>())
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let paths = seg_paths(&dir);
    assert!(paths.len() >= 2);
    let mut bytes = fs::read(&paths[0]).expect("read");
    bytes[1024..1536].fill(0);
    fs::write(&paths[0], &bytes).expect("write");
    let before = dir_bytes(&dir);
    let (file, _, reason) = expect_corrupt(Wal::open(&dir).unwrap_err());
    assert_eq!(file, paths[0]);
    assert!(reason.contains("not the last"), "{reason}");
    assert_eq!(dir_bytes(&dir), before);
}

#[test]
fn last_segment_without_a_complete_header_is_dropped_on_open() {
    // An empty file, a header cut short (type byte 1 then nothing), and a zero-filled file.
    for (leftover_len, fill) in [(0usize, 1u8), (5, 1), (4096, 0)] {
        let t = TempDir::new().expect("tempdir");
        let dir = wal_dir(&t);
        let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
        let recs: Vec<Record> = (1..=30).map(entry).collect();
        wal.append(&recs).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        // Simulate a crash right after a roll created the next file.
        let names = seg_names(&dir);
        let (seq, _) = parse_segment_name(names.last().expect("a segment")).expect("name");
        let ghost = dir.join(segment_file_name(seq + 1, 31));
        fs::write(&ghost, vec![fill; leftover_len]).expect("write ghost");
        let before = dir_bytes(&dir);

        assert_eq!(Wal::read_only(&dir).expect("read_only"), with_meta(&recs));
        assert_eq!(dir_bytes(&dir), before, "read_only must not remove it");

        let (mut wal, got) = Wal::open_with_options(&dir, tiny()).expect("open");
        assert_eq!(got, with_meta(&recs));
        assert!(!ghost.exists(), "the headerless segment is removed");
        wal.append(&[entry(31), entry(32)]).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let mut expected = recs.clone();
        expected.extend([entry(31), entry(32)]);
        let (_w, got) = Wal::open_with_options(&dir, tiny()).expect("reopen");
        assert_eq!(got, with_meta(&expected));
    }
}

#[test]
fn missing_middle_segment_is_corrupt() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    wal.append(&(1..=60).map(entry).collect::<Vec<_>>())
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let paths = seg_paths(&dir);
    assert!(paths.len() >= 3);
    fs::remove_file(&paths[1]).expect("remove");
    let before = dir_bytes(&dir);
    let (file, _, reason) = expect_corrupt(Wal::open_with_options(&dir, tiny()).unwrap_err());
    assert_eq!(file, paths[2]);
    assert!(reason.contains("gap"), "{reason}");
    assert_eq!(dir_bytes(&dir), before);
}

#[test]
fn renamed_or_foreign_segments_are_corrupt() {
    // A segment whose name disagrees with its header.
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    wal.append(&(1..=30).map(entry).collect::<Vec<_>>())
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let paths = seg_paths(&dir);
    let renamed = dir.join(segment_file_name(1, 999));
    fs::rename(&paths[1], &renamed).expect("rename");
    let (file, _, reason) = expect_corrupt(Wal::read_only(&dir).unwrap_err());
    assert_eq!(file, renamed);
    assert!(reason.contains("file name says"), "{reason}");
    fs::rename(&renamed, &paths[1]).expect("rename back");

    // A segment from another member (same shape, different metadata).
    let other = t.path().join("other");
    let mut foreign_meta = META.to_vec();
    *foreign_meta.last_mut().expect("non-empty") ^= 1; // same length, so same roll points
    let mut wal = Wal::create_with_options(&other, &foreign_meta, tiny()).expect("create");
    wal.append(&(1..=30).map(entry).collect::<Vec<_>>())
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let other_paths = seg_paths(&other);
    assert_eq!(seg_names(&other), seg_names(&dir));
    fs::copy(&other_paths[1], &paths[1]).expect("copy");
    let (file, _, reason) = expect_corrupt(Wal::open_with_options(&dir, tiny()).unwrap_err());
    assert_eq!(file, paths[1]);
    assert!(reason.contains("metadata differs"), "{reason}");
}

#[test]
fn unknown_record_type_is_corrupt_even_at_the_tail() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create(&dir, META).expect("create");
    wal.append(&[entry(1)]).expect("append");
    wal.sync().expect("sync");
    let seg = wal.current_path();
    drop(wal);
    let good = file_len(&seg);
    let mut bytes = fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0x7f, 1, 2, 3, 4, 0, 0, 0, 0]);
    fs::write(&seg, &bytes).expect("write");
    let (file, offset, reason) = expect_corrupt(Wal::open(&dir).unwrap_err());
    assert_eq!((file, offset), (seg.clone(), good));
    assert!(reason.contains("unknown record type 127"), "{reason}");
    assert_eq!(fs::read(&seg).expect("read"), bytes);
}

#[test]
fn create_refuses_an_existing_wal() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create(&dir, META).expect("create");
    wal.append(&[entry(1)]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let before = dir_bytes(&dir);
    match Wal::create(&dir, b"other") {
        Err(WalError::AlreadyExists { dir: d }) => assert_eq!(d, dir),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(dir_bytes(&dir), before);
    let (_w, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, with_meta(&[entry(1)]));
}

#[test]
fn interrupted_create_is_cleaned_up_and_empty_dir_is_reused() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let tmp = t.path().join("member").join("wal.tmp");
    fs::create_dir_all(&tmp).expect("mkdir");
    fs::write(tmp.join(segment_file_name(0, 0)), b"\x01half a header").expect("write");
    fs::write(tmp.join("junk"), b"x").expect("write");
    fs::create_dir_all(&dir).expect("mkdir"); // an empty target directory is fine

    let wal = Wal::create(&dir, META).expect("create");
    drop(wal);
    assert!(!tmp.exists(), "leftover staging dir removed");
    assert_eq!(seg_names(&dir), vec![segment_file_name(0, 0)]);
    let (_w, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, vec![Record::Metadata(META.to_vec())]);
}

#[test]
fn missing_wal_and_stray_files_are_reported() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    assert!(matches!(Wal::open(&dir), Err(WalError::NotFound { .. })));
    assert!(matches!(
        Wal::read_only(&dir),
        Err(WalError::NotFound { .. })
    ));
    fs::create_dir_all(&dir).expect("mkdir");
    assert!(matches!(Wal::open(&dir), Err(WalError::NotFound { .. })));

    drop(Wal::create(&dir, META).expect("create"));
    let stray = dir.join("backup.wal");
    fs::write(&stray, b"x").expect("write");
    match Wal::open(&dir) {
        Err(e @ WalError::UnexpectedFile { .. }) => {
            assert!(e.to_string().contains("backup.wal"), "{e}");
        }
        other => panic!("expected UnexpectedFile, got {other:?}"),
    }
}

#[test]
fn appending_metadata_is_refused_without_writing_anything() {
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create(&dir, META).expect("create");
    let seg = wal.current_path();
    let len = file_len(&seg);
    let err = wal
        .append(&[entry(1), Record::Metadata(b"new".to_vec())])
        .unwrap_err();
    assert!(matches!(err, WalError::InvalidRecord { .. }), "{err:?}");
    wal.sync().expect("sync still works");
    assert_eq!(file_len(&seg), len);
    assert_eq!(wal.bytes_written(), 0);
    wal.append(&[entry(1)]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (_w, got) = Wal::open(&dir).expect("open");
    assert_eq!(got, with_meta(&[entry(1)]));
}

#[test]
fn overwritten_entries_are_returned_as_written() {
    // Raft may rewrite a suffix after a leader change; the WAL keeps both and the caller
    // resolves it, but release must not drop a segment holding entries >= index.
    let t = TempDir::new().expect("tempdir");
    let dir = wal_dir(&t);
    let mut wal = Wal::create_with_options(&dir, META, tiny()).expect("create");
    let first: Vec<Record> = (1..=20).map(entry).collect();
    let rewrite: Vec<Record> = (15..=25)
        .map(|i| Record::Entry {
            index: i,
            term: 9,
            data: payload(i, 50),
        })
        .collect();
    wal.append(&first).expect("append");
    wal.append(&rewrite).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (mut wal, got) = Wal::open_with_options(&dir, tiny()).expect("open");
    let mut expected = first.clone();
    expected.extend(rewrite.clone());
    assert_eq!(got, with_meta(&expected));
    // Every segment holds some entry >= 15, except those made only of 1..=14.
    wal.release_to(15).expect("release");
    drop(wal);
    let (_w, got) = Wal::open_with_options(&dir, tiny()).expect("reopen");
    for i in 15..=25u64 {
        assert!(
            got.iter()
                .any(|r| matches!(r, Record::Entry { index, term: 9, .. } if *index == i)),
            "rewritten entry {i} lost"
        );
    }
}
