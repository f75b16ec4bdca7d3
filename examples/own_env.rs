//! A user-defined meta-task in Rust, trained with ProMP-TayPO-2.
//!
//! The task distribution: a cart on a line must settle at a target position drawn
//! uniformly in [−1, 1] (the task), unobserved; the policy adapts to it from one batch of
//! episodes. Implementing [`MetaEnv`] is all it takes: the engine samples tasks with
//! `sample_tasks`, switches copies between them with `set_task`, and steps copies in
//! parallel (cloned by `boxed_clone`), every draw from the run's seed.
//!
//! Run with `cargo run --release --example own_env` (a few seconds); `cargo test` runs it
//! too (its test below).

use metagrad::envs::{EnvSource, MetaEnv, Step};
use metagrad::error::{Result, invalid};
use metagrad::experiments::meta_rl::RunSettings;
use metagrad::meta::algos::{Algorithm, Trainer};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// A cart on a line: observation (position, velocity), action a force in [−1, 1].
#[derive(Clone, Debug, Default)]
struct Cart {
    target: f64,
    pos: f64,
    vel: f64,
}

impl MetaEnv for Cart {
    fn name(&self) -> &str {
        "cart-target"
    }
    fn obs_dim(&self) -> usize {
        2
    }
    fn act_dim(&self) -> usize {
        1
    }
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-1.0], vec![1.0])
    }
    fn sample_tasks(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        (0..n).map(|_| vec![rng.random_range(-1.0..1.0)]).collect()
    }
    fn set_task(&mut self, task: &[f64]) -> Result<()> {
        match task {
            [t] if t.is_finite() => {
                self.target = *t;
                Ok(())
            }
            _ => Err(invalid("task", format!("expected one finite target, got {task:?}"))),
        }
    }
    fn reset(&mut self, rng: &mut ChaCha8Rng, obs: &mut [f64]) -> Result<()> {
        self.pos = rng.random_range(-0.1..0.1);
        self.vel = 0.0;
        obs.copy_from_slice(&[self.pos, self.vel]);
        Ok(())
    }
    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<Step> {
        let force = action[0].clamp(-1.0, 1.0);
        self.vel = 0.9 * self.vel + 0.05 * force;
        self.pos += self.vel;
        obs.copy_from_slice(&[self.pos, self.vel]);
        let reward = -(self.pos - self.target).abs() - 0.01 * force * force;
        Ok(Step { reward, done: false })
    }
    fn boxed_clone(&self) -> Box<dyn MetaEnv> {
        Box::new(self.clone())
    }
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<()> {
    let env = EnvSource::native("cart-target", || Ok(Box::new(Cart::default()) as Box<dyn MetaEnv>));
    let settings = RunSettings {
        iterations: 30,
        tasks: 10,
        rollouts: 10,
        horizon: 50,
        hidden: vec![32, 32],
        ..Default::default()
    };
    let params = settings.params_in(Algorithm::PrompTaypo2, 1, env, None)?;
    let mut trainer = Trainer::new(params)?;
    let mut first = None;
    while !trainer.finished() {
        // None: the run diverged while sampling (`trainer.state().diverged` says why).
        let Some(s) = trainer.step()? else { break };
        let post = s.post_returns[0];
        first.get_or_insert(post);
        if s.iteration % 5 == 4 {
            println!(
                "iteration {:>2}: return before adaptation {:7.2}, after {:7.2}",
                s.iteration + 1,
                s.pre_return,
                post
            );
        }
    }
    let last = trainer.state().history.last().expect("iterations ran").post_returns[0];
    let first = first.expect("iterations ran");
    println!("post-update return {first:.2} → {last:.2}");
    if last <= first {
        return Err(invalid(
            "example",
            format!("training did not improve the return ({first:.2} → {last:.2})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_trains() {
        super::main().unwrap();
    }
}
