//! 2-D point navigation to one of four corner goals (ProMP's point envs, docs/theory.md#environments).
//!
//! Tasks: the goal g is drawn uniformly among the four corners (±2, ±2); it is not
//! observed. Reward after each step: r = max(2 − ‖p' − g‖₂, 0), with p' the position
//! after the step. No termination (episodes end at the sampler's horizon).
//!
//! * `point-corners` ([`PointEnv::corners`], with momentum): observation (p, v) ∈ R⁴;
//!   reset p ~ U[−0.2, 0.2]², v ~ U[−0.1, 0.1]²; step v ← v + clip(a, ±0.1), p ← p + v.
//! * `point-corners-simple` ([`PointEnv::corners_simple`], no momentum): observation
//!   p ∈ R²; reset p ~ U[−0.2, 0.2]²; step p ← p + clip(a, ±0.1).
//!
//! Both have action bounds [−0.1, 0.1]²; the sampler maps the policy's [−10, 10]² onto
//! them.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{MetaEnv, Step};
use crate::error::{Result, SettingError, invalid};

/// The four corner goals.
pub const CORNERS: [[f64; 2]; 4] = [[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]];
/// Action bound: actions are clipped to [−ACTION_BOUND, ACTION_BOUND] per dimension.
pub const ACTION_BOUND: f64 = 0.1;

/// The 2-D corner-goal point environment, with or without momentum (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct PointEnv {
    momentum: bool,
    goal: [f64; 2],
    pos: [f64; 2],
    vel: [f64; 2],
}

impl PointEnv {
    /// `point-corners`: the momentum env of paper Fig. 1(d).
    pub fn corners() -> Self {
        Self { momentum: true, goal: CORNERS[3], pos: [0.0; 2], vel: [0.0; 2] }
    }
    /// `point-corners-simple`: ProMP's corner env without momentum.
    pub fn corners_simple() -> Self {
        Self { momentum: false, ..Self::corners() }
    }
    /// The env for a command-line name (`point-corners` or `point-corners-simple`).
    pub fn from_name(name: &str) -> std::result::Result<Self, SettingError> {
        match name {
            "point-corners" => Ok(Self::corners()),
            "point-corners-simple" => Ok(Self::corners_simple()),
            other => Err(SettingError::new("env", other, "expected point-corners or point-corners-simple")),
        }
    }
    /// Current goal.
    pub fn goal(&self) -> [f64; 2] {
        self.goal
    }
    /// Current position.
    pub fn position(&self) -> [f64; 2] {
        self.pos
    }
    /// Current velocity (always zero without momentum).
    pub fn velocity(&self) -> [f64; 2] {
        self.vel
    }
    /// An error unless `obs` is an observation buffer of this env's length.
    fn check_obs(&self, obs: &[f64]) -> Result<()> {
        if obs.len() == self.obs_dim() {
            Ok(())
        } else {
            Err(invalid("obs", format!("buffer length {}, expected {}", obs.len(), self.obs_dim())))
        }
    }
    /// Writes the observation into a buffer checked by [`Self::check_obs`].
    fn write_obs(&self, obs: &mut [f64]) {
        obs[..2].copy_from_slice(&self.pos);
        if self.momentum {
            obs[2..4].copy_from_slice(&self.vel);
        }
    }
}

impl MetaEnv for PointEnv {
    fn name(&self) -> &str {
        if self.momentum { "point-corners" } else { "point-corners-simple" }
    }
    fn obs_dim(&self) -> usize {
        if self.momentum { 4 } else { 2 }
    }
    fn act_dim(&self) -> usize {
        2
    }
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-ACTION_BOUND; 2], vec![ACTION_BOUND; 2])
    }
    /// Each goal is one of the four corners, uniformly.
    fn sample_tasks(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        (0..n).map(|_| CORNERS[rng.random_range(0..4usize)].to_vec()).collect()
    }
    /// Sets the goal; a task that is not a finite 2-vector is refused.
    fn set_task(&mut self, task: &[f64]) -> Result<()> {
        if task.len() != 2 || !task.iter().all(|t| t.is_finite()) {
            return Err(SettingError::new("task", format!("{task:?}"), "expected a finite 2-D goal").into());
        }
        self.goal = [task[0], task[1]];
        Ok(())
    }
    fn reset(&mut self, rng: &mut ChaCha8Rng, obs: &mut [f64]) -> Result<()> {
        self.check_obs(obs)?;
        self.pos = [rng.random_range(-0.2..0.2), rng.random_range(-0.2..0.2)];
        self.vel =
            if self.momentum { [rng.random_range(-0.1..0.1), rng.random_range(-0.1..0.1)] } else { [0.0; 2] };
        self.write_obs(obs);
        Ok(())
    }
    /// NaN action entries count as 0 rather than poisoning the state.
    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<Step> {
        if action.len() != 2 {
            return Err(invalid("action", format!("length {}, expected 2", action.len())));
        }
        self.check_obs(obs)?;
        for (k, &ak) in action.iter().enumerate() {
            let a = if ak.is_nan() { 0.0 } else { ak.clamp(-ACTION_BOUND, ACTION_BOUND) };
            if self.momentum {
                self.vel[k] += a;
                self.pos[k] += self.vel[k];
            } else {
                self.pos[k] += a;
            }
        }
        self.write_obs(obs);
        let dist = ((self.pos[0] - self.goal[0]).powi(2) + (self.pos[1] - self.goal[1]).powi(2)).sqrt();
        Ok(Step { reward: (2.0 - dist).max(0.0), done: false })
    }
    fn boxed_clone(&self) -> Box<dyn MetaEnv> {
        Box::new(self.clone())
    }
    /// The goal.
    fn current_task(&self) -> Option<Vec<f64>> {
        Some(self.goal.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tasks_are_corners_and_all_appear() {
        let env = PointEnv::corners();
        let tasks = env.sample_tasks(200, &mut ChaCha8Rng::seed_from_u64(1));
        for c in CORNERS {
            assert!(tasks.iter().any(|t| t[..] == c[..]));
        }
        assert!(tasks.iter().all(|t| CORNERS.iter().any(|c| t[..] == c[..])));
        assert_eq!(tasks, env.sample_tasks(200, &mut ChaCha8Rng::seed_from_u64(1)));
    }

    #[test]
    fn momentum_dynamics_reward_and_clipping() {
        let mut env = PointEnv::corners();
        env.set_task(&[2.0, 2.0]).unwrap();
        let mut obs = [0.0; 4];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            env.reset(&mut rng, &mut obs).unwrap();
            assert!(obs[..2].iter().all(|p| p.abs() <= 0.2) && obs[2..].iter().all(|v| v.abs() <= 0.1));
        }
        let (p0, v0) = (env.position(), env.velocity());
        let s = env.step(&[0.05, 5.0], &mut obs).unwrap();
        let v1 = [v0[0] + 0.05, v0[1] + 0.1];
        let p1 = [p0[0] + v1[0], p0[1] + v1[1]];
        assert_eq!(obs, [p1[0], p1[1], v1[0], v1[1]]);
        let d = ((p1[0] - 2.0).powi(2) + (p1[1] - 2.0).powi(2)).sqrt();
        assert!((s.reward - (2.0 - d).max(0.0)).abs() < 1e-15);
        // Near the goal the reward is positive and equals 2 − distance.
        let mut near = PointEnv::corners();
        near.set_task(&[0.5, -0.5]).unwrap();
        near.reset(&mut rng, &mut obs).unwrap();
        let s = near.step(&[0.0, 0.0], &mut obs).unwrap();
        let d = ((obs[0] - 0.5).powi(2) + (obs[1] + 0.5).powi(2)).sqrt();
        assert!(s.reward > 0.0 && (s.reward - (2.0 - d)).abs() < 1e-15);
        assert!(!s.done);
        // Far from the goal the reward is 0.
        let mut far = PointEnv::corners();
        far.set_task(&[-2.0, -2.0]).unwrap();
        far.reset(&mut rng, &mut obs).unwrap();
        for _ in 0..30 {
            far.step(&[0.1, 0.1], &mut obs).unwrap();
        }
        assert_eq!(far.step(&[0.1, 0.1], &mut obs).unwrap().reward, 0.0);
    }

    #[test]
    fn simple_env_has_no_momentum() {
        let mut env = PointEnv::corners_simple();
        assert_eq!((env.name(), env.obs_dim(), env.act_dim()), ("point-corners-simple", 2, 2));
        env.set_task(&[-2.0, 2.0]).unwrap();
        let mut obs = [0.0; 2];
        env.reset(&mut ChaCha8Rng::seed_from_u64(4), &mut obs).unwrap();
        let p0 = env.position();
        env.step(&[-1.0, 0.03], &mut obs).unwrap();
        assert_eq!(obs, [p0[0] - 0.1, p0[1] + 0.03]);
        let p1 = env.position();
        let s = env.step(&[0.0, 0.0], &mut obs).unwrap();
        assert_eq!(obs, p1);
        let d = ((p1[0] + 2.0).powi(2) + (p1[1] - 2.0).powi(2)).sqrt();
        assert!((s.reward - (2.0 - d).max(0.0)).abs() < 1e-15);
    }

    #[test]
    fn bad_names_and_tasks_are_errors() {
        assert!(PointEnv::from_name("point").unwrap_err().to_string().contains("env = point"));
        assert_eq!(PointEnv::from_name("point-corners").unwrap().name(), "point-corners");
        let mut env = PointEnv::corners();
        let msg = env.set_task(&[1.0]).unwrap_err().to_string();
        assert!(msg.contains("task") && msg.contains("[1.0]"), "{msg}");
        assert!(env.set_task(&[f64::NAN, 0.0]).is_err());
        assert_eq!(env.goal(), CORNERS[3], "a refused task keeps the previous one");
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut obs = [0.0; 4];
        env.reset(&mut rng, &mut obs).unwrap();
        let before = (env.position(), env.velocity());
        assert!(env.step(&[0.0], &mut obs).unwrap_err().to_string().contains("action"));
        assert!(env.step(&[0.0; 2], &mut [0.0; 2]).unwrap_err().to_string().contains("obs"));
        assert_eq!((env.position(), env.velocity()), before, "a refused step leaves the state");
        assert!(env.reset(&mut rng, &mut [0.0; 3]).unwrap_err().to_string().contains("obs"));
    }
}
