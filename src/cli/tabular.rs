//! `metagrad tabular`: the paper's Fig. 1 (a–c) study and the meta-gradient study.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use metagrad::experiments::prepare_output_dir;
use metagrad::experiments::tabular_study::{StudySettings, SummaryRow, summarise, write_results};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    settings: StudySettings,
    /// Output folder.
    #[arg(long, default_value = "results/tabular")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let study = args.settings.validate()?;
    // Refuse an unwritable folder before the work, not after it.
    prepare_output_dir(&args.out)?;
    let started = std::time::Instant::now();
    let bar = ProgressBar::new(study.n_jobs() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} tabular [{bar:40}] {pos}/{len} grid points × trials, {elapsed} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let rows = study.run(&|| bar.inc(1))?;
    bar.finish_and_clear();
    let summary = summarise(&rows);
    let figures = write_results(&args.out, &study, &rows, &summary)?;
    print_summary(&summary);
    eprintln!(
        "wrote trials.csv, summary.csv, config.json and {} figure(s) ({}) to {} in {:.1} s",
        figures.len(),
        figures.join(", "),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_summary(summary: &[SummaryRow]) {
    println!(
        "{:<6} {:<10} {:>5} {:>6}  {:>16}  {:>16}  {:>16}",
        "sweep", "estimator", "eps", "N", "grad corr", "hess corr", "metagrad corr"
    );
    for r in summary {
        let meta = match (r.metagrad_mean, r.metagrad_se) {
            (Some(m), Some(s)) => format!("{m:.3} ± {s:.3}"),
            _ => String::new(),
        };
        println!(
            "{:<6} {:<10} {:>5} {:>6}  {:>16}  {:>16}  {:>16}",
            r.sweep,
            r.estimator,
            r.eps,
            r.n,
            format!("{:.3} ± {:.3}", r.grad_mean, r.grad_se),
            format!("{:.3} ± {:.3}", r.hess_mean, r.hess_se),
            meta
        );
    }
}
