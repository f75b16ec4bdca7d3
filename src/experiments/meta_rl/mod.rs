//! Meta-RL runs and grids with their result files (paper Fig. 1 d and Fig. 2): the one
//! implementation behind `metagrad meta-rl`, `metagrad meta-rl compare` and the Python
//! package's `metagrad.meta_rl`.
//!
//! A run folder holds `config.json` (every setting), `progress.csv` (one row per
//! iteration: `iteration, pre_return, post_return_1..K, env_steps, wall_s, outer_diag`),
//! `checkpoint.json` (settings, θ, optimiser state and the iteration counter, written
//! after every iteration; all randomness of iteration i derives from (seed, i), so a
//! resumed run continues exactly as an uninterrupted run would) and
//! `learning_curve.{png,svg}`. A grid folder holds one run folder per algorithm and seed
//! (`<algo>/seed<s>/`), `summary.csv`, `paired.csv` (per seed, the paired differences of
//! every two algorithms: [`paired_differences`]), `summary.md` (both as tables) and the
//! figure (`fig1d` for the 2-D task, `fig2` for a MuJoCo task).
//!
//! The pieces: [`RunSettings`] (the settings under the command line's names), one run and
//! its files (`run`), grids of runs (`grid`), the grid's summaries (`report`) and its
//! success rates ([`success`]).

mod grid;
mod report;
mod run;
pub mod success;

pub use crate::meta::settings::RunSettings;
pub use grid::{Grid, GridProgress, GridSettings};
pub use report::{
    PAIRED_WINDOW, PairedDiff, SummaryRow, max_drop, mean_se_text, paired_differences, paired_markdown,
    summary_markdown,
};
pub use run::{ForkRecord, Progress, Resume, RunRecord, fork, load_run, run, run_with};
