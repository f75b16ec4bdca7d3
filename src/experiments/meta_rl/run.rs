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
    mut remote: Option<&mut dyn RemoteSampling>,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    prepare_output_dir(out)?;
    let ckpt_path = out.join("checkpoint.json");
    let present = ckpt_path.exists();
    let mut trainer = match (present, resume) {
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
mod tests {
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
}
