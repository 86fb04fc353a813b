//! The history database against real files.

use super::*;

fn dir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("skyhop-db-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

const T0: SimTime = 1_800_000_000 * skyhop_core::SECS;

#[test]
fn a_received_chat_and_a_sent_chats_outcome_are_there_after_reopening() {
    let d = dir("reopen");
    let mut h = History::open(&d, HistoryLimits::default(), T0).expect("open");
    let writes = [
        Write::Received {
            from: id(1),
            msg_id: MsgId(7),
            body: "hi".into(),
            hops: 2,
        },
        Write::Sent {
            to: id(1),
            msg_id: MsgId(u64::MAX),
            body: "hello".into(),
        },
        Write::Sent {
            to: id(2),
            msg_id: MsgId(9),
            body: "anyone?".into(),
        },
        Write::Sent {
            to: id(3),
            msg_id: MsgId(10),
            body: "pending".into(),
        },
    ];
    h.apply(&writes, T0, |_| None).expect("apply");
    let outcomes = [
        Write::Delivered {
            to: id(1),
            msg_id: MsgId(u64::MAX),
            hops: 3,
        },
        Write::Failed {
            to: id(2),
            msg_id: Some(MsgId(9)),
            body: None,
            reason: "recipient is offline".into(),
            said_by: SaidBy::HomeSupernode,
            offline: true,
        },
    ];
    h.apply(&outcomes, T0 + 1_000_000, |_| None).expect("apply");
    drop(h);
    let h = History::open(&d, HistoryLimits::default(), T0 + 2_000_000).expect("reopen");
    let all = h.page(None, 100).expect("page").messages;
    assert_eq!(all.len(), 4);
    assert_eq!(
        (all[0].direction, all[0].state, all[0].body.as_str()),
        (Direction::In, ChatState::Received, "hi")
    );
    assert_eq!(all[1].msg_id, MsgId(u64::MAX), "u64 ids keep their bits");
    assert_eq!(
        (all[1].state, all[1].said_by, all[1].hops),
        (ChatState::Delivered, Some(SaidBy::Recipient), Some(3))
    );
    assert_eq!(
        (all[2].state, all[2].said_by),
        (ChatState::Failed, Some(SaidBy::HomeSupernode))
    );
    assert_eq!(
        all[3].state,
        ChatState::Interrupted,
        "a chat still pending when the node stopped"
    );
    let with_1 = h.page(Some(id(1)), 100).expect("page").messages;
    assert_eq!(with_1.len(), 2);
    let contacts = h
        .contacts(T0 / 1000 * 1000 + 2_000_000, |_| false)
        .expect("c");
    assert_eq!(contacts.len(), 3);
    let c2 = contacts.iter().find(|c| c.id == id(2)).expect("contact 2");
    assert_eq!(c2.presence, Presence::Offline);
    let c1 = contacts.iter().find(|c| c.id == id(1)).expect("contact 1");
    assert_eq!(c1.presence, Presence::Online);
    assert_eq!(c1.first_seen_ms, T0 / 1000, "pinned at first contact");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_row_bound_deletes_the_oldest_and_counts_them() {
    let d = dir("bound");
    let limits = HistoryLimits {
        max_rows: 5,
        max_age_days: 1,
    };
    let mut h = History::open(&d, limits, T0).expect("open");
    for n in 0..8u64 {
        let w = Write::Received {
            from: id(1),
            msg_id: MsgId(n),
            body: format!("m{n}"),
            hops: 1,
        };
        h.apply(&[w], T0, |_| None).expect("apply");
    }
    let page = h.page(None, 100).expect("page");
    let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m3", "m4", "m5", "m6", "m7"]);
    assert_eq!((page.rows, page.evicted), (5, 3));
    // Two days later every row is past the age bound.
    h.prune_age(T0 + 2 * 24 * 3600 * skyhop_core::SECS)
        .expect("prune");
    assert_eq!((h.rows(), h.evicted()), (0, 8));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_file_that_is_not_a_history_names_itself_and_the_fix() {
    let d = dir("corrupt");
    std::fs::write(d.join(HISTORY_FILE), vec![0x42u8; 8192]).expect("write");
    let e = History::open(&d, HistoryLimits::default(), T0)
        .expect_err("garbage is refused")
        .to_string();
    assert!(
        e.contains(HISTORY_FILE) && e.contains("corrupt") && e.contains("move it away"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn limits_out_of_range_are_refused() {
    let bad_rows = HistoryLimits {
        max_rows: 0,
        max_age_days: 1,
    };
    assert_eq!(bad_rows.validate(), Err(LimitsError::Rows(0)));
    let bad_days = HistoryLimits {
        max_rows: 1,
        max_age_days: MAX_AGE_DAYS_LIMIT + 1,
    };
    assert!(bad_days.validate().is_err());
    assert!(HistoryLimits::default().validate().is_ok());
}

#[test]
fn presence_follows_the_latest_word() {
    let min = 60_000;
    assert_eq!(presence(10 * min, true, None, None), Presence::Online);
    assert_eq!(
        presence(10 * min, false, Some(9 * min), None),
        Presence::Online
    );
    assert_eq!(
        presence(10 * min, false, Some(9 * min), Some(9 * min + 1)),
        Presence::Offline
    );
    assert_eq!(
        presence(100 * min, false, Some(9 * min), None),
        Presence::Unknown
    );
    assert_eq!(presence(10 * min, false, None, None), Presence::Unknown);
}

#[test]
fn replay_marks_are_there_after_reopening_and_bounded() {
    let d = dir("marks");
    let mut h = History::open(&d, HistoryLimits::default(), T0).expect("open");
    let mark = |n: u64| ReplayMark {
        seq: u64::MAX - n,
        epoch: n,
        latest_sent_at: 1_000 + n,
    };
    let author = |n: u64| {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        NodeId(b)
    };
    h.apply(
        &[Write::ReplayMark {
            author: author(0),
            mark: mark(0),
            forgotten_before: 5,
        }],
        T0,
        |_| None,
    )
    .expect("apply");
    // A later mark of the same author replaces it; the floor never drops.
    h.apply(
        &[Write::ReplayMark {
            author: author(0),
            mark: mark(1),
            forgotten_before: 0,
        }],
        T0,
        |_| None,
    )
    .expect("apply");
    drop(h);
    let h = History::open(&d, HistoryLimits::default(), T0).expect("reopen");
    assert_eq!(
        h.replay_marks().expect("read"),
        (vec![(author(0), mark(1))], 5)
    );
    drop(h);
    // Past the bound, the oldest go and the floor rises past them.
    let mut h = History::open(&d, HistoryLimits::default(), T0).expect("reopen");
    let writes: Vec<Write> = (1..=MAX_REPLAY_MARKS + 1)
        .map(|n| Write::ReplayMark {
            author: author(n),
            mark: mark(n),
            forgotten_before: 0,
        })
        .collect();
    h.apply(&writes, T0, |_| None).expect("apply");
    let (marks, floor) = h.replay_marks().expect("read");
    assert_eq!(marks.len() as u64, MAX_REPLAY_MARKS);
    assert!(!marks
        .iter()
        .any(|(a, _)| *a == author(0) || *a == author(1)));
    assert_eq!(floor, mark(1).latest_sent_at + 1);
}

#[test]
fn written_chats_are_copied_into_the_database_file_within_seconds() {
    let d = dir("checkpoint");
    let mut h = History::open(&d, HistoryLimits::default(), T0).expect("open");
    let file = d.join(HISTORY_FILE);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(&file);
    // ~4 MB of chats, one commit each: past SQLite's own mark of 1,000
    // pages, at which a commit would have copied the log itself.
    let body = "x".repeat(4000);
    for n in 0..1_200u64 {
        let w = Write::Received {
            from: id(1),
            msg_id: MsgId(n),
            body: body.clone(),
            hops: 1,
        };
        h.apply(&[w], T0, |_| None).expect("apply");
    }
    // The checkpoint thread copies them within a few of its rounds.
    let grown = (0..100).any(|_| {
        std::thread::sleep(checkpoint::EVERY / 10);
        size(&file) > before + 4_000_000
    });
    assert!(grown, "the file stayed at {} bytes", size(&file));
    drop(h);
    // And they are all there when the file is opened again.
    let h = History::open(&d, HistoryLimits::default(), T0).expect("reopen");
    assert_eq!(h.rows(), 1_200);
    drop(h);
    let _ = std::fs::remove_dir_all(&d);
}
