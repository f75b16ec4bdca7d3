//! A bounded fuzz harness on stable Rust (proptest): malformed problem JSON, structured
//! (a field replaced by an arbitrary JSON value) and byte-level (bytes inserted, deleted,
//! replaced), and arbitrary flag values. Every input must give a clean `Err` or a finite
//! result, never a panic; sizes are checked before allocation, so no case can exhaust
//! memory. Runs a few hundred cases in seconds; findings become regression tests
//! (`proptest-regressions/` and `tests/hostile_input.rs`).

use metagrad::estimators::Estimator;
use metagrad::experiments::meta_rl::RunSettings;
use metagrad::experiments::tabular_study::StudySettings;
use metagrad::meta::algos::Algorithm;
use metagrad::problem::Problem;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A small valid problem: 2 states, 2 actions, 2 trajectories of 3 steps.
fn base() -> Value {
    json!({
        "gamma": 0.8, "start_state": 0,
        "transitions": [[[0.5, 0.5], [1.0, 0.0]], [[0.2, 0.8], [0.0, 1.0]]],
        "rewards": [[1.0, 0.0], [0.5, -1.0]],
        "theta": [[0.1, -0.2], [0.0, 0.3]],
        "behaviour": [[0.5, 0.5], [0.25, 0.75]],
        "critic": {"state_values": [0.4, -0.1]},
        "trajectories": [
            {"states": [0, 1, 1, 0], "actions": [0, 1, 0], "rewards": [1.0, -1.0, 0.5]},
            {"states": [1, 0, 0, 1], "actions": [1, 1, 0], "rewards": [0.0, 0.0, 1.0]}
        ]
    })
}

/// Arbitrary JSON values, numbers at the edges included.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(1e308), Just(-1e308), Just(5e-324), Just(0.0), Just(-0.0), Just(1.0), Just(0.5)]
            .prop_map(Value::from),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path (object keys and array indices) of `v`.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(Value::from(k.clone()));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(Value::from(i));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, p| match p {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

/// Parses and, when valid, estimates: no panic, and every result finite or an error.
fn check(text: &str) {
    if let Ok(p) = Problem::parse(text, "fuzz") {
        for e in ["is", "dr", "dr-trunc", "taypo-1", "taypo-2", "taypo-5", "maml"] {
            let est: Estimator = e.parse().unwrap();
            if p.check_estimators(&[est]).is_err() {
                continue;
            }
            if let Ok(d) = p.estimate(est) {
                assert!(d.value.is_finite() && d.gradient.iter().chain(&d.hessian).all(|x| x.is_finite()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn structured_mutations_give_errors_not_panics(
        picks in prop::collection::vec((any::<prop::sample::Index>(), any_json()), 1..4),
    ) {
        let mut v = base();
        for (pick, replacement) in picks {
            let mut all = Vec::new();
            paths(&v, &mut Vec::new(), &mut all);
            let path = pick.get(&all).clone();
            *at(&mut v, &path) = replacement;
        }
        check(&v.to_string());
    }

    #[test]
    fn byte_mutations_give_errors_not_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8),
    ) {
        let mut bytes = base().to_string().into_bytes();
        for (pos, kind, byte) in edits {
            let i = pos.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            check(text);
        }
    }

    #[test]
    fn flag_values_are_validated_without_panics(
        sizes in prop::collection::vec(prop_oneof![0usize..50, Just(usize::MAX), Just(1usize << 32), any::<usize>()], 8),
        eps in prop_oneof![Just(5e-324), Just(f64::NAN), Just(1e308), 0.0f64..1.0],
        k in prop_oneof![1usize..5, Just(usize::MAX)],
    ) {
        let s = StudySettings {
            states: sizes[0], actions: sizes[1], n: sizes[2], horizon: sizes[3], trials: sizes[4],
            n_grid: vec![sizes[5]], eps: vec![eps], estimators: format!("is,taypo-{k}"),
            ..StudySettings::default()
        };
        let positive = |idx: &[usize]| idx.iter().all(|&i| sizes[i] > 0);
        let eps_ok = (0.0..=1.0).contains(&eps);
        let valid = s.validate();
        // A zero size or an ε outside [0, 1] (NaN included) is refused; small sizes, an ε in
        // range and a small K are accepted.
        if !positive(&[0, 1, 2, 3, 4, 5]) || !eps_ok {
            prop_assert!(valid.is_err(), "accepted: {sizes:?}, ε = {eps}");
        }
        let r = RunSettings {
            tasks: sizes[4], rollouts: sizes[5], horizon: sizes[6], inner_steps: Some(sizes[7]),
            hidden: vec![sizes[0], sizes[1]], adam_lr: eps, ..RunSettings::default()
        };
        let run = r.params(Algorithm::Promp, 1);
        if !positive(&[0, 1, 4, 5, 6, 7]) || eps.is_nan() {
            prop_assert!(run.is_err(), "accepted: {sizes:?}, adam-lr = {eps}");
        }
    }

    #[test]
    fn small_flag_values_are_accepted(
        sizes in prop::collection::vec(2usize..20, 8),
        eps in 0.0f64..=1.0,
        k in 1usize..5,
    ) {
        let s = StudySettings {
            states: sizes[0], actions: sizes[1], n: sizes[2], horizon: sizes[3], trials: sizes[4],
            n_grid: vec![sizes[5]], eps: vec![eps], estimators: format!("is,taypo-{k}"),
            ..StudySettings::default()
        };
        let valid = s.validate();
        prop_assert!(valid.is_ok(), "refused: {sizes:?}, ε = {eps}: {}", valid.unwrap_err());
        let r = RunSettings {
            tasks: sizes[4], rollouts: sizes[5], horizon: sizes[6], inner_steps: Some(sizes[7]),
            hidden: vec![sizes[0], sizes[1]], adam_lr: eps.max(1e-6), ..RunSettings::default()
        };
        let run = r.params(Algorithm::Promp, 1);
        prop_assert!(run.is_ok(), "refused: {sizes:?}: {}", run.unwrap_err());
    }
}

/// The mutation tests start from a problem that parses and gives finite estimates with
/// every estimator (else their assertion would never be reached).
#[test]
fn the_unmutated_problem_reaches_every_estimate() {
    let p = Problem::parse(&base().to_string(), "fuzz").unwrap();
    for e in ["is", "dr", "dr-trunc", "taypo-1", "taypo-2", "taypo-5", "maml"] {
        let est: Estimator = e.parse().unwrap();
        p.check_estimators(&[est]).unwrap();
        let d = p.estimate(est).unwrap();
        assert!(d.value.is_finite() && !d.gradient.is_empty() && !d.hessian.is_empty(), "{e}");
    }
}
