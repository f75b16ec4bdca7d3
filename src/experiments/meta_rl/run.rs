//! One meta-RL run in its folder: `config.json`, `progress.csv`, `checkpoint.json` and the
//! learning curve; resuming from the checkpoint.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, invalid};
use crate::experiments::{RunConfig, csv_io, prepare_output_dir, write_json};
use crate::meta::algos::{Divergence, IterationStats, Params, Trainer, TrainerState, ValidParams};
use crate::meta::task_sampling::RemoteSampling;
use crate::plot::{Figure, Series, save_or_skip};

/// What to do with an existing checkpoint in a run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Start a new run; refuse a folder that holds one.
    No,
    /// Continue the run in the folder; refuse a folder without one.
    Required,
    /// Continue a run if the folder holds one, start one otherwise (grids).
    IfPresent,
}

/// What a run reports while it goes.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// The run starts (`done` = iterations already completed by earlier sittings).
    Started {
        /// Completed iterations.
        done: usize,
        /// The iteration budget.
        total: usize,
    },
    /// The divergence guard stopped the run (after the diverging iteration's checkpoint).
    Diverged(&'a Divergence),
    /// An iteration finished and its checkpoint is on disk.
    Iteration {
        /// Its results.
        stats: &'a IterationStats,
        /// Environment steps per second of the whole iteration (sampling and update).
        env_steps_per_s: f64,
    },
}

/// The checkpoint file: settings and state.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    params: Params,
    state: TrainerState,
}

/// Settings that must agree for a resume (everything but the iteration budget).
fn same_run(a: &Params, b: &Params) -> bool {
    Params { iterations: 0, ..a.clone() } == Params { iterations: 0, ..b.clone() }
}

fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let text =
        crate::limits::read_bounded_as(path, crate::limits::DEFAULT_MAX_INPUT_BYTES, "checkpoint", None)?;
    let ck: Checkpoint = serde_json::from_str(&text)
        .map_err(|source| Error::Parse { context: format!("checkpoint {}", path.display()), source })?;
    Ok(Checkpoint { params: ck.params.upgrade_legacy(), state: ck.state })
}

/// Runs (or resumes, see [`Resume`]) one run in `out`, calling `observe` when it starts and
/// after every iteration (an error from `observe` stops the run there, with that
/// iteration's checkpoint written). Returns the whole history.
pub fn run(
    params: &ValidParams,
    out: &Path,
    resume: Resume,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    run_with(params, out, resume, None, observe)
}

/// [`run`] with every iteration's tasks sampled by `remote` when given (e.g. by workers in
/// other processes, [`crate::meta::task_sampling`]): the same files, bit for bit.
pub fn run_with(
    params: &ValidParams,
    out: &Path,
    resume: Resume,
    remote: Option<&mut dyn RemoteSampling>,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    prepare_output_dir(out)?;
    let ckpt_path = out.join("checkpoint.json");
    let present = ckpt_path.exists();
    let trainer = match (present, resume) {
        (true, Resume::Required | Resume::IfPresent) => {
            let ck = read_checkpoint(&ckpt_path)?;
            if !same_run(&ck.params, params) {
                return Err(invalid(
                    "resume",
                    format!(
                        "the settings differ from those of {} (only the iteration budget may change); \
                         use another output folder for a new run",
                        ckpt_path.display()
                    ),
                ));
            }
            Trainer::resume(params.clone(), ck.state)?
        }
        (true, Resume::No) => {
            return Err(invalid(
                "out",
                format!(
                    "{} holds a run already: continue it with resume (--resume on the command line, \
                     resume=True in Python) or choose another output folder",
                    ckpt_path.display()
                ),
            ));
        }
        (false, Resume::Required) => {
            return Err(invalid(
                "resume",
                format!("no checkpoint at {} to continue (--resume / resume=True)", ckpt_path.display()),
            ));
        }
        (false, _) => Trainer::new(params.clone())?,
    };
    continue_run(trainer, params, out, remote, observe)
}

/// Where a forked run started: written as `fork.json` in its folder by [`fork`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForkRecord {
    /// The folder of the run it started from, as given.
    pub from: String,
    /// The iterations that run had completed (the fork's first `iteration` rows are that
    /// run's).
    pub iteration: usize,
    /// That run's settings.
    pub from_settings: Params,
}

/// Starts a run in `out` (which must not hold one) from the state of the run in `from`: its
/// θ, optimiser state and history, continued under `params`, which may differ from that run's
/// settings in anything that keeps the state valid ([`Trainer::fork`]; the environment must be
/// the same), e.g. the settings of ProMP's outer loss and optimiser. Every later iteration
/// depends on the seed and the iteration as in any run, so a fork with that run's settings
/// continues it bit for bit. `fork.json` records the origin ([`ForkRecord`]); the fork is then
/// an ordinary run (continue it with [`Resume::Required`]).
pub fn fork(
    params: &ValidParams,
    out: &Path,
    from: &Path,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    let source = read_checkpoint(&from.join("checkpoint.json"))?;
    if source.params.env != params.env {
        return Err(invalid(
            "fork",
            format!("{} ran on {:?}, this run is on {:?}", from.display(), source.params.env, params.env),
        ));
    }
    prepare_output_dir(out)?;
    if out.join("checkpoint.json").exists() {
        return Err(invalid(
            "out",
            format!(
                "{} holds a run already; fork into another folder",
                out.join("checkpoint.json").display()
            ),
        ));
    }
    let record = ForkRecord {
        from: from.display().to_string(),
        iteration: source.state.iteration,
        from_settings: source.params,
    };
    let trainer = Trainer::fork(params.clone(), source.state)?;
    write_json(&out.join("fork.json"), &record)?;
    continue_run(trainer, params, out, None, observe)
}

/// Runs `trainer` to its budget in `out`, writing the files after every iteration.
fn continue_run(
    mut trainer: Trainer,
    params: &ValidParams,
    out: &Path,
    mut remote: Option<&mut dyn RemoteSampling>,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    let ckpt_path = out.join("checkpoint.json");
    // Written by the binary that runs iterations (a finished run keeps the record of the
    // binary that produced it, so that re-summarising it does not overwrite that).
    if !trainer.finished() || !out.join("config.json").exists() {
        write_json(&out.join("config.json"), &RunConfig::new("meta-rl", &**params))?;
    }
    observe(Progress::Started { done: trainer.state().iteration, total: params.iterations })?;
    while !trainer.finished() {
        let (steps_before, wall_before) = (trainer.state().env_steps, trainer.state().wall_s);
        let stats = trainer.step_with(remote.as_deref_mut())?;
        write_progress(&out.join("progress.csv"), &trainer.state().history)?;
        let ck = Checkpoint { params: (**params).clone(), state: trainer.state().clone() };
        let text = serde_json::to_string(&ck).expect("a checkpoint serialises");
        crate::atomic::write_bytes(&ckpt_path, text.as_bytes())?;
        // None: the run diverged while sampling (reported below, as the guard's divergence).
        if let Some(s) = stats {
            let rate = (s.env_steps - steps_before) as f64 / (s.wall_s - wall_before).max(1e-9);
            observe(Progress::Iteration { stats: &s, env_steps_per_s: rate })?;
        }
    }
    if let Some(d) = &trainer.state().diverged {
        observe(Progress::Diverged(d))?;
    }
    let history = trainer.state().history.clone();
    write_progress(&out.join("progress.csv"), &history)?;
    plot_run(
        &history,
        &format!("{} on {} (seed {})", params.algo, params.env, params.seed),
        &out.join("learning_curve"),
    )?;
    Ok(history)
}

/// A run's history and, if the divergence guard stopped it, why.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// Every finished iteration.
    pub history: Vec<IterationStats>,
    /// Set when the run diverged.
    pub diverged: Option<Divergence>,
}

/// The record of the run in `dir` (from its checkpoint).
pub fn load_run(dir: &Path) -> Result<RunRecord> {
    let state = read_checkpoint(&dir.join("checkpoint.json"))?.state;
    Ok(RunRecord { history: state.history, diverged: state.diverged })
}

fn write_progress(path: &Path, history: &[IterationStats]) -> Result<()> {
    let k = history.first().map_or(0, |h| h.post_returns.len());
    let steps = history.iter().map(|h| h.diagnostics.outer_losses.len()).max().unwrap_or(0);
    crate::atomic::write_with(path, |out| {
        let mut w = csv::Writer::from_writer(out);
        let mut header = vec!["iteration".to_string(), "pre_return".into()];
        header.extend((1..=k).map(|i| format!("post_return_{i}")));
        header.extend(["env_steps".into(), "wall_s".into(), "outer_diag".into()]);
        header.extend([
            "inner_step_norm_mean".into(),
            "inner_step_norm_max".into(),
            "max_inner_ratio_dev".into(),
        ]);
        header.extend((1..=steps).map(|i| format!("outer_loss_{i}")));
        // Success rates (environments that report success) and the meta-test (runs that
        // evaluate): columns only when some iteration has them.
        let success = history.iter().any(|h| h.pre_success.is_some());
        let test = history.iter().any(|h| h.test.is_some());
        let test_success = history.iter().any(|h| h.test.as_ref().is_some_and(|t| t.pre_success.is_some()));
        if success {
            header.push("pre_success".into());
            header.extend((1..=k).map(|i| format!("post_success_{i}")));
        }
        if test {
            header.extend(["test_pre_return".into(), "test_post_return".into()]);
        }
        if test_success {
            header.extend(["test_pre_success".into(), "test_post_success".into()]);
        }
        // Diagnostics recorded since the first runs (docs/experiments/promp-breakdown.md):
        // columns only when some iteration has them, so older files keep their columns.
        let log_std = history.iter().any(|h| h.diagnostics.log_std.is_some());
        let promp = history.iter().any(|h| h.diagnostics.promp.is_some());
        if log_std {
            header.extend(["log_std".into(), "adapted_log_std_min".into()]);
        }
        if promp {
            header.extend((1..=k).map(|i| format!("inner_kl_{i}")));
            header.extend((1..=k).map(|i| format!("max_inner_ratio_dev_{i}")));
            header.extend(
                ["clip_fraction", "outer_step_norm", "outer_step_max", "adaptation_gain"].map(String::from),
            );
        }
        w.write_record(&header).map_err(csv_io)?;
        for h in history {
            let d = &h.diagnostics;
            let mut rec = vec![h.iteration.to_string(), h.pre_return.to_string()];
            rec.extend(h.post_returns.iter().map(|x| x.to_string()));
            rec.extend([h.env_steps.to_string(), format!("{:.3}", h.wall_s), h.outer_diag.to_string()]);
            rec.extend(
                [d.inner_step_norm_mean, d.inner_step_norm_max, d.max_inner_ratio_dev].map(|x| x.to_string()),
            );
            // Runs saved before the diagnostics existed (or diverged mid-update) leave blanks.
            rec.extend((0..steps).map(|i| d.outer_losses.get(i).map_or(String::new(), |x| x.to_string())));
            let cell = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
            if success {
                rec.push(cell(h.pre_success));
                rec.extend((0..k).map(|i| cell(h.post_success.get(i).copied())));
            }
            if test {
                rec.push(cell(h.test.as_ref().map(|t| t.pre_return)));
                rec.push(cell(h.test.as_ref().map(|t| t.post_return)));
            }
            if test_success {
                rec.push(cell(h.test.as_ref().and_then(|t| t.pre_success)));
                rec.push(cell(h.test.as_ref().and_then(|t| t.post_success)));
            }
            if log_std {
                rec.push(cell(d.log_std));
                rec.push(cell(d.adapted_log_std_min));
            }
            if promp {
                let o = d.promp.as_ref();
                let per_round = |v: Option<&Vec<f64>>, i: usize| cell(v.and_then(|v| v.get(i).copied()));
                rec.extend((0..k).map(|i| per_round(o.map(|o| &o.inner_kl), i)));
                rec.extend((0..k).map(|i| per_round(o.map(|o| &o.inner_ratio_dev), i)));
                rec.push(cell(o.map(|o| o.clip_fraction)));
                rec.push(cell(o.map(|o| o.outer_step_norm)));
                rec.push(cell(o.map(|o| o.outer_step_max)));
                rec.push(cell(o.and_then(|o| o.adaptation_gain)));
            }
            w.write_record(&rec).map_err(csv_io)?;
        }
        w.flush()
    })
}

fn plot_run(history: &[IterationStats], title: &str, stem: &Path) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let x: Vec<f64> = history.iter().map(|h| h.iteration as f64).collect();
    let mut series = vec![Series {
        name: "pre-update".into(),
        x: x.clone(),
        y: history.iter().map(|h| h.pre_return).collect(),
        err: None,
    }];
    for k in 0..history[0].post_returns.len() {
        series.push(Series {
            name: format!("after {} inner step{}", k + 1, if k == 0 { "" } else { "s" }),
            x: x.clone(),
            y: history.iter().map(|h| h.post_returns[k]).collect(),
            err: None,
        });
    }
    let fig = Figure {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: "average return".into(),
        log_x: false,
        series,
    };
    save_or_skip(&fig, stem).map(|_| ())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::experiments::meta_rl::RunSettings;
    use crate::meta::algos::Algorithm;
    use crate::meta::objectives::DiceCritic;

    #[test]
    fn runs_saved_before_the_dice_critic_setting_resume_with_the_critic_they_used() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = RunSettings::tiny(1);
        for algo in [Algorithm::TrpoDice, Algorithm::Promp] {
            let out = dir.path().join(algo.name());
            let p = tiny.params(algo, 1).unwrap();
            assert_eq!(p.dice_critic.is_some(), algo == Algorithm::TrpoDice);
            run(&p, &out, Resume::No, &mut |_| Ok(())).unwrap();
            // Remove the setting from the checkpoint, as runs saved before it existed lack it.
            let path = out.join("checkpoint.json");
            let mut ck: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            ck["params"].as_object_mut().unwrap().remove("dice_critic");
            std::fs::write(&path, ck.to_string()).unwrap();
            let more = RunSettings { iterations: 2, ..tiny.clone() };
            let resume =
                |s: &RunSettings| run(&s.params(algo, 1).unwrap(), &out, Resume::Required, &mut |_| Ok(()));
            if algo == Algorithm::TrpoDice {
                // Such a run used the feature baseline: the default (time) is another run.
                let e = resume(&more).unwrap_err().to_string();
                assert!(e.contains("settings differ"), "{e}");
                let h = resume(&RunSettings { dice_critic: DiceCritic::Features, ..more }).unwrap();
                assert_eq!(h.len(), 2);
            } else {
                assert_eq!(resume(&more).unwrap().len(), 2);
            }
        }
    }

    #[test]
    fn runs_with_infinite_settings_resume() {
        // No loss guard, and ProMP-TayPO-2 with a first-order clip and the pair term unclipped.
        let dir = tempfile::tempdir().unwrap();
        let tiny = RunSettings {
            divergence_threshold: f64::INFINITY,
            taypo2_ratio_clip: Some(0.3),
            taypo2_pair_clip: Some(f64::INFINITY),
            ..RunSettings::tiny(1)
        };
        let p = tiny.params(Algorithm::PrompTaypo2, 1).unwrap();
        run(&p, dir.path(), Resume::No, &mut |_| Ok(())).unwrap();
        let saved = std::fs::read_to_string(dir.path().join("checkpoint.json")).unwrap();
        assert!(
            saved.contains(r#""divergence_threshold":"inf""#)
                && saved.contains(r#""taypo2_pair_clip":"inf""#)
        );
        let more = RunSettings { iterations: 2, ..tiny }.params(Algorithm::PrompTaypo2, 1).unwrap();
        assert_eq!(run(&more, dir.path(), Resume::Required, &mut |_| Ok(())).unwrap().len(), 2);
    }

    #[test]
    fn a_non_finite_inner_step_marks_the_run_diverged_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        // θ + ηg overflows to infinity at the first inner step (raw advantages, largest η).
        let p = RunSettings { horizon: 100, ..RunSettings::tiny(3) }.to_params(
            Algorithm::Promp,
            1,
            "point-corners",
        );
        let p = Params { inner_lr: f64::MAX, normalize_advantages: false, ..p }.validate().unwrap();
        let mut seen = Vec::new();
        let history = run(&p, dir.path(), Resume::No, &mut |progress| {
            seen.push(match progress {
                Progress::Started { .. } => "started".to_string(),
                Progress::Iteration { .. } => "iteration".into(),
                Progress::Diverged(d) => format!("diverged at {}: {}", d.iteration, d.cause),
            });
            Ok(())
        })
        .unwrap();
        assert!(history.is_empty(), "{seen:?}");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].starts_with("diverged at 0") && seen[1].contains("not finite"), "{seen:?}");
        let record = load_run(dir.path()).unwrap();
        assert!(record.history.is_empty() && record.diverged.is_some());
        // The finished run resumes as finished.
        assert!(run(&p, dir.path(), Resume::Required, &mut |_| Ok(())).unwrap().is_empty());
    }

    /// The header of the progress file in `dir`.
    fn header(dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("progress.csv")).unwrap();
        text.lines().next().unwrap().split(',').map(str::to_owned).collect()
    }

    /// A progress file's rows without the wall-clock column.
    pub(in crate::experiments::meta_rl) fn rows_without_wall(dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("progress.csv")).unwrap();
        let wall = header(dir).iter().position(|c| c == "wall_s").unwrap();
        text.lines()
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| *i != wall)
                    .map(|(_, c)| c)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn a_fork_with_the_same_settings_continues_the_run_bit_for_bit_and_records_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        // Paths long enough to reach rewards (the advantages are not all 0).
        let tiny = |iterations| RunSettings { horizon: 40, ..RunSettings::tiny(iterations) };
        let (short, long) = (tiny(2), tiny(4));
        let algo = Algorithm::Promp;
        let whole = dir.path().join("whole");
        run(&long.params(algo, 3).unwrap(), &whole, Resume::No, &mut |_| Ok(())).unwrap();
        let start = dir.path().join("start");
        run(&short.params(algo, 3).unwrap(), &start, Resume::No, &mut |_| Ok(())).unwrap();
        let same = dir.path().join("same");
        let h = fork(&long.params(algo, 3).unwrap(), &same, &start, &mut |_| Ok(())).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(rows_without_wall(&same), rows_without_wall(&whole));
        let record: ForkRecord =
            serde_json::from_str(&std::fs::read_to_string(same.join("fork.json")).unwrap()).unwrap();
        assert_eq!((record.iteration, record.from_settings.iterations), (2, 2));
        // Other settings of the outer loss and optimiser: the first two iterations are the
        // origin's, the later ones differ; the fork resumes as an ordinary run.
        let other = RunSettings {
            inner_kl_average: crate::meta::params::InnerKlAverage::Mean,
            kl_coeff: 0.5,
            adam_eps: 1e-3,
            ..long.clone()
        };
        let changed = dir.path().join("changed");
        let h = fork(&other.params(algo, 3).unwrap(), &changed, &start, &mut |_| Ok(())).unwrap();
        let (a, b) = (rows_without_wall(&changed), rows_without_wall(&whole));
        assert_eq!(a[..3], b[..3]);
        assert_ne!(a[3..], b[3..]);
        assert_eq!(h[2..], load_run(&changed).unwrap().history[2..]);
        let more = RunSettings { iterations: 5, ..other.clone() };
        assert_eq!(
            run(&more.params(algo, 3).unwrap(), &changed, Resume::Required, &mut |_| Ok(())).unwrap().len(),
            5
        );
        // Refused: a folder that holds a run, another environment, another architecture.
        let e = fork(&long.params(algo, 3).unwrap(), &same, &start, &mut |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("holds a run already"), "{e}");
        let simple = RunSettings { env: "point-corners-simple".into(), ..long.clone() };
        let e = fork(&simple.params(algo, 3).unwrap(), &dir.path().join("x"), &start, &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fork") && e.contains("point-corners-simple"), "{e}");
        let wide = RunSettings { hidden: vec![7], ..long.clone() };
        let e = fork(&wide.params(algo, 3).unwrap(), &dir.path().join("y"), &start, &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("checkpoint theta"), "{e}");
        assert!(!dir.path().join("y").join("fork.json").exists());
    }

    #[test]
    fn a_diverged_run_is_not_forked() {
        let dir = tempfile::tempdir().unwrap();
        let p = RunSettings { ratio_guard: Some(1e-9), horizon: 40, ..RunSettings::tiny(3) }
            .params(Algorithm::Promp, 1)
            .unwrap();
        let from = dir.path().join("from");
        run(&p, &from, Resume::No, &mut |_| Ok(())).unwrap();
        assert!(load_run(&from).unwrap().diverged.is_some());
        let p = RunSettings { horizon: 40, ..RunSettings::tiny(3) }.params(Algorithm::Promp, 1).unwrap();
        let e = fork(&p, &dir.path().join("to"), &from, &mut |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("diverged"), "{e}");
    }

    #[test]
    fn progress_files_have_the_diagnostics_columns_only_when_recorded() {
        let dir = tempfile::tempdir().unwrap();
        for algo in [Algorithm::Promp, Algorithm::TrpoMaml] {
            let out = dir.path().join(algo.name());
            run(&RunSettings::tiny(2).params(algo, 1).unwrap(), &out, Resume::No, &mut |_| Ok(())).unwrap();
            let h = header(&out);
            let k = 3;
            let at = h.iter().position(|c| c == "log_std").expect("log_std");
            assert_eq!(h[at + 1], "adapted_log_std_min");
            assert_eq!(at + 2 == h.len(), !algo.is_promp(), "{h:?}");
            let promp: Vec<String> = (1..=k)
                .map(|i| format!("inner_kl_{i}"))
                .chain((1..=k).map(|i| format!("max_inner_ratio_dev_{i}")))
                .chain(
                    ["clip_fraction", "outer_step_norm", "outer_step_max", "adaptation_gain"]
                        .map(String::from),
                )
                .collect();
            assert_eq!(h.ends_with(&promp), algo.is_promp(), "{h:?}");
            // A history recorded without them (runs saved before they existed) keeps the
            // columns it had.
            let mut history = load_run(&out).unwrap().history;
            for s in &mut history {
                s.diagnostics.log_std = None;
                s.diagnostics.adapted_log_std_min = None;
                s.diagnostics.promp = None;
            }
            write_progress(&out.join("progress.csv"), &history).unwrap();
            let old = header(&out);
            assert_eq!(
                old.last().map(String::as_str),
                Some(if algo.is_promp() { "outer_loss_5" } else { "max_inner_ratio_dev" })
            );
            // One iteration with them (a run continued by a newer binary): the columns, with
            // blank cells for the iteration without.
            history[1].diagnostics = load_run(&out).unwrap().history[1].diagnostics.clone();
            write_progress(&out.join("progress.csv"), &history).unwrap();
            assert_eq!(header(&out), h);
            let text = std::fs::read_to_string(out.join("progress.csv")).unwrap();
            let at = h.iter().position(|c| c == "log_std").unwrap();
            let cell = |row: usize| text.lines().nth(row).unwrap().split(',').nth(at).unwrap().to_owned();
            assert_eq!(cell(1), "");
            assert!(cell(2).parse::<f64>().unwrap().is_finite());
        }
    }
}
