//! Learning-rate schedules: each one's factor at the steps that define it, warm-up, the
//! `--schedule` grammar and its errors; a run with a schedule resumes bit-identically
//! (tests/checkpoint.rs) and writes the rate to --metrics (tests/cli.rs).

use gpu_train::schedule::Schedule;

const S: usize = 10; // steps per epoch
const E: usize = 5; // epochs: 50 steps

fn f(s: &Schedule, t: u64, warmup: f64) -> f64 {
    s.factor(t, S, E, warmup)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn constant_and_warm_up() {
    let c = Schedule::Constant;
    assert!(
        (1..=50).all(|t| f(&c, t, 0.0) == 1.0),
        "a constant rate is exactly 1, so runs match the previous release"
    );
    // 1.5 warm-up epochs: 15 steps rising linearly to 1
    assert!(close(f(&c, 1, 1.5), 1.0 / 15.0));
    assert!(close(f(&c, 10, 1.5), 10.0 / 15.0));
    assert_eq!(f(&c, 15, 1.5), 1.0);
    assert_eq!(f(&c, 16, 1.5), 1.0);
}

#[test]
fn step_multiplies_after_each_listed_epoch() {
    let s = Schedule::parse("step:2,4:0.1").unwrap();
    assert_eq!(s, Schedule::Step { milestones: vec![2, 4], gamma: 0.1 });
    assert_eq!(f(&s, 20, 0.0), 1.0, "the last step of epoch 2 still runs at the full rate");
    assert!(close(f(&s, 21, 0.0), 0.1));
    assert!(close(f(&s, 40, 0.0), 0.1));
    assert!(close(f(&s, 41, 0.0), 0.01));
    assert!(close(f(&s, 5, 1.0), 0.5), "warm-up scales the first epoch");
}

#[test]
fn cosine_falls_from_the_full_rate_to_near_zero() {
    let c = Schedule::Cosine;
    assert_eq!(f(&c, 1, 0.0), 1.0);
    // halfway through the 50 steps: step 26 has progress 25/50
    assert!(close(f(&c, 26, 0.0), 0.5));
    let last = f(&c, 50, 0.0);
    assert!(last > 0.0 && last < 0.001, "{last}");
    let mut prev = 2.0;
    for t in 1..=50 {
        let v = f(&c, t, 0.0);
        assert!(v < prev, "falls at every step");
        prev = v;
    }
    // one warm-up epoch: up to 1 at step 10, then the cosine over the other 40 steps
    assert!(close(f(&c, 5, 1.0), 0.5));
    assert_eq!(f(&c, 11, 1.0), 1.0);
    assert!(close(f(&c, 31, 1.0), 0.5));
}

#[test]
fn onecycle_rises_to_the_rate_then_falls_far_below_it() {
    let o = Schedule::OneCycle;
    assert!(close(f(&o, 1, 0.0), 1.0 / 25.0));
    assert!(close(f(&o, 15, 0.0), 1.0), "peak after 30% of the steps");
    assert!(close(f(&o, 50, 0.0), 1.0 / 25.0 / 1e4));
    assert!(f(&o, 8, 0.0) > f(&o, 2, 0.0) && f(&o, 30, 0.0) < f(&o, 16, 0.0));
}

#[test]
fn the_schedule_grammar_round_trips_and_errors_say_why() {
    for text in ["constant", "cosine", "onecycle", "step:10,15:0.1", "step:3:0.5"] {
        let s = Schedule::parse(text).unwrap();
        assert_eq!(s.to_string(), text);
        assert_eq!(Schedule::parse(&s.to_string()).unwrap(), s);
    }
    assert_eq!(Schedule::parse(" Cosine ").unwrap(), Schedule::Cosine);
    for (bad, needle) in [
        ("linear", "unknown schedule"),
        ("step:10", "lacks its factor"),
        ("step:10,5:0.1", "larger than the one before"),
        ("step:0:0.1", "at least 1"),
        ("step:x:0.1", "whole number"),
        ("step:3:0", "positive"),
        ("step:3:nan", "positive"),
        ("step::0.5", "whole number"),
    ] {
        let e = Schedule::parse(bad).unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}
