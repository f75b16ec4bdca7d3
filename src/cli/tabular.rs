//! `metagrad tabular`: the paper's Fig. 1 (a–c) study and the meta-gradient study.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use metagrad::experiments::biasvar::BiasVarOutput;
use metagrad::experiments::prepare_output_dir;
use metagrad::experiments::tabular_study::{StudySettings, SummaryRow, write_results};

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
            "{spinner} tabular [{bar:40}] {pos}/{len} work items (grid points × trials, biasvar chunks), {elapsed} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let output = study.run_all(&|| bar.inc(1))?;
    bar.finish_and_clear();
    let figures = write_results(&args.out, &study, &output)?;
    print_summary(&output.summary);
    if let Some(bv) = &output.biasvar {
        print_biasvar(bv);
    }
    eprintln!(
        "wrote trials.csv, summary.csv, config.json{} and {} figure(s) ({}) to {} in {:.1} s",
        if output.biasvar.is_some() { ", biasvar*.csv" } else { "" },
        figures.len(),
        figures.join(", "),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_biasvar(bv: &BiasVarOutput) {
    println!();
    println!(
        "{:<10} {:>5} {:<8} {:<3}  {:>27}  {:>10}  {:>8}",
        "estimator", "eps", "quantity", "vs", "bias² (mean over trials)", "variance", "detected"
    );
    for r in &bv.summary {
        println!(
            "{:<10} {:>5} {:<8} {:<3}  {:>27}  {:>10.3e}  {:>5}/{}",
            r.estimator,
            r.eps,
            format!("{:?}", r.quantity).to_lowercase(),
            serde_json::to_value(r.target)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            r.bias2_text(),
            r.variance,
            r.detectable_trials,
            bv.rows
                .iter()
                .filter(|x| x.estimator == r.estimator
                    && x.eps == r.eps
                    && x.quantity == r.quantity
                    && x.target == r.target)
                .count()
        );
    }
    for c in &bv.crossovers {
        let show = |n: Option<f64>| n.map_or("none".to_string(), |n| format!("{n:.0}"));
        println!(
            "taypo-2 overtakes taypo-1 ({:?}, {}): predicted N* = {}, observed N* = {}",
            c.quantity,
            c.criterion,
            show(c.predicted_n),
            show(c.observed_n)
        );
    }
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
