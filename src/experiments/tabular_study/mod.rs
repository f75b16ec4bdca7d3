//! The tabular study of the paper's Fig. 1 (a–c), plus meta-gradient accuracy.
//!
//! A *trial* draws a random MDP (docs/theory.md#tabular-benchmark), a deterministic policy π_d and
//! the critic noise; within a trial every grid point (ε or N) draws its own data from μ. The target
//! policy is π = ε π_d + (1 − ε) μ with θ = log π, the behaviour μ is uniform, the critic
//! is V̂(x) = V^μ(x) + ξ(x)·s‖V^μ‖₂/|X| with ξ ~ N(0, 1) and s = `critic_noise`. The
//! accuracy of an estimate is the Pearson correlation between the flattened exact
//! derivative (infinite-horizon oracle) and the estimate averaged over N trajectories.
//!
//! The meta sweep compares the Alg. 1 meta-gradient (I + ηĤ)ĝ' with the exact
//! ∇_θ V(θ + η∇V(θ)) = (I + η∇²V(θ)) ∇V(θ') (see [`MetaRow`]).
//!
//! The pieces: the settings ([`StudySettings`], [`StudyParams`], [`ValidStudy`]), the trials
//! and their sweeps ([`TrialSetup`], [`TrialRow`]), the summary and its figures
//! ([`SummaryRow`]), and the bias–variance sweep ([`biasvar`]).

pub mod biasvar;
mod params;
mod summary;
mod trials;

pub use params::{
    DEFAULT_BIASVAR_CHUNK, DEFAULT_BIASVAR_TRAJECTORIES, DEFAULT_ETA, StudyParams, StudySettings, Sweep,
    ValidStudy,
};
pub use summary::{SummaryRow, plot_summary, summarise};
pub use trials::{MetaRow, TrialRow, TrialSetup, exact_meta_gradient};

use serde::Serialize;

use crate::error::Result;

/// Everything a study run produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudyOutput {
    /// One row per sweep × estimator × grid point × trial.
    pub rows: Vec<TrialRow>,
    /// Mean and standard error over trials.
    pub summary: Vec<SummaryRow>,
    /// The biasvar sweep's results (with `--sweep biasvar`).
    pub biasvar: Option<biasvar::BiasVarOutput>,
}

impl ValidStudy {
    /// Runs the study's sweeps ([`Self::run`], and [`Self::run_biasvar`] for the biasvar
    /// sweep) and summarises them, calling `progress` after each of [`Self::n_jobs`] items.
    pub fn run_all(&self, progress: &(dyn Fn() + Sync)) -> Result<StudyOutput> {
        let rows = self.run(progress)?;
        let summary = summarise(&rows);
        let biasvar = if self.sweep == Sweep::Biasvar {
            let bv = self.run_biasvar(progress)?;
            Some(biasvar::BiasVarOutput::new(self, bv, &summary))
        } else {
            None
        };
        Ok(StudyOutput { rows, summary, biasvar })
    }
}

/// Writes a study's files to `out`: `trials.csv`, `summary.csv`, `config.json` (every
/// setting, the seed, version and commit), the figures of [`plot_summary`] and, for the
/// biasvar sweep, those of [`biasvar::BiasVarOutput::write`]. Returns the figures'
/// stems.
pub fn write_results(out: &std::path::Path, study: &ValidStudy, output: &StudyOutput) -> Result<Vec<String>> {
    use crate::experiments::{RunConfig, prepare_output_dir, write_csv, write_json};
    prepare_output_dir(out)?;
    write_csv(&out.join("trials.csv"), &output.rows)?;
    write_csv(&out.join("summary.csv"), &output.summary)?;
    write_json(&out.join("config.json"), &RunConfig::new("tabular", &**study))?;
    let mut figures = plot_summary(&output.summary, out)?;
    if let Some(bv) = &output.biasvar {
        figures.extend(bv.write(out, study)?);
    }
    Ok(figures)
}
