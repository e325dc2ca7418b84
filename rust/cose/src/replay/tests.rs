use super::*;

#[test]
fn in_order() {
    let mut w = ReplayWindow::new();
    for s in 0..1000 {
        assert_eq!(w.check_and_accept(s), Ok(()));
    }
    assert_eq!(w.highest(), Some(999));
}

#[test]
fn first_message_may_be_any_value() {
    let mut w = ReplayWindow::new();
    assert_eq!(w.check(0), Ok(()));
    w.accept(0);
    assert_eq!(w.check(0), Err(Replay::Duplicate));
    let mut w = ReplayWindow::new();
    w.accept(u64::MAX);
    assert_eq!(w.check(u64::MAX), Err(Replay::Duplicate));
    assert_eq!(w.check(u64::MAX - 127), Ok(()));
    assert_eq!(w.check(u64::MAX - 128), Err(Replay::BelowWindow));
}

#[test]
fn out_of_order_inside_window_once() {
    let mut w = ReplayWindow::new();
    w.accept(200);
    for s in [150, 199, 73, 100] {
        assert_eq!(w.check_and_accept(s), Ok(()), "{s}");
        assert_eq!(w.check(s), Err(Replay::Duplicate), "{s}");
    }
    assert_eq!(w.highest(), Some(200));
}

#[test]
fn edges_of_the_window() {
    let mut w = ReplayWindow::new();
    w.accept(1000);
    assert_eq!(w.check(1000 - 127), Ok(()));
    assert_eq!(w.check(1000 - 128), Err(Replay::BelowWindow));
    assert_eq!(w.check(0), Err(Replay::BelowWindow));
    // Accepting a too-old value changes nothing.
    let before = w;
    w.accept(5);
    assert_eq!(w, before);
}

#[test]
fn duplicate_and_check_does_not_mutate() {
    let mut w = ReplayWindow::new();
    w.accept(10);
    let before = w;
    assert_eq!(w.check(11), Ok(()));
    assert_eq!(w, before);
    assert_eq!(w.check_and_accept(10), Err(Replay::Duplicate));
    assert_eq!(w, before);
}

#[test]
fn window_slides() {
    let mut w = ReplayWindow::new();
    w.accept(10);
    w.accept(12);
    // 11 is still open, 10 and 12 are taken
    assert_eq!(w.check(11), Ok(()));
    assert_eq!(w.check(10), Err(Replay::Duplicate));
    // Slide by 127: 12 is now at offset 127 (still remembered), 10 falls out.
    w.accept(139);
    assert_eq!(w.check(12), Err(Replay::Duplicate));
    assert_eq!(w.check(11), Err(Replay::BelowWindow));
    // A big jump forgets everything older than the window.
    w.accept(10_000);
    assert_eq!(w.check(139), Err(Replay::BelowWindow));
    assert_eq!(w.check(9_999), Ok(()));
    assert_eq!(w.bitmap(), 1);
}

#[test]
fn parts_round_trip() {
    let mut w = ReplayWindow::new();
    for s in [3, 9, 4, 130] {
        w.accept(s);
    }
    let r = ReplayWindow::from_parts(w.highest(), w.bitmap());
    assert_eq!(r, w);
    assert_eq!(ReplayWindow::from_parts(None, 77), ReplayWindow::new());
    // bits below seq 0 are dropped; highest is marked as seen
    let r = ReplayWindow::from_parts(Some(2), u128::MAX << 1);
    assert_eq!(r.bitmap(), 0b111);
    assert_eq!(r.check(2), Err(Replay::Duplicate));
}
