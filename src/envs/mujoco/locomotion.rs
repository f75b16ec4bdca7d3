//! The locomotion meta-tasks of ProMP's benchmark (docs/theory.md#environments), on Gymnasium v5
//! robots.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{MujocoError, PhysParams, Sim};
use crate::envs::{MetaEnv, Step};

/// The eight meta-task families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvKind {
    /// HalfCheetah, task d ∈ {±1}: reward d·Δx/dt − 0.05‖a‖², never terminates, frame skip 5,
    /// observation `qpos[1:]` ⊕ qvel (17).
    HalfCheetahRandDirec,
    /// Ant, task d ∈ {±1}: reward d·Δx/dt − 0.5‖a‖² − 5e-4·Σclip(cfrc_ext, ±1)² + 1, done when
    /// the state is not finite or the torso height leaves [0.2, 1.0]; frame skip 5; observation
    /// as Gymnasium's Ant-v5: `qpos[2:]` ⊕ qvel ⊕ clip(`cfrc_ext[1:]`, ±1) (105).
    AntRandDirec,
    /// Ant, task goal g uniform in the disk of radius 3: reward −‖xy − g‖₁ − 0.1‖a‖² − contact
    /// cost (no alive bonus); termination and observation as [`EnvKind::AntRandDirec`].
    AntRandGoal,
    /// Walker2d (Gymnasium's `walker2d_v5.xml`), task d ∈ {±1}: reward d·Δx/dt + 1 −
    /// 1e-3‖a‖², healthy while 0.8 < z < 2 and |angle| < 1; frame skip 8 (ProMP's);
    /// observation `qpos[1:]` ⊕ clip(qvel, ±10) (17).
    Walker2DRandDirec,
    /// Hopper with randomised physics: reward Δx/dt + 1 − 1e-3‖a‖², Hopper-v5's healthy
    /// condition; frame skip 4; observation `qpos[1:]` ⊕ clip(qvel, ±10) (11).
    HopperRandParams,
    /// Walker2d with randomised physics: reward Δx/dt + 1 − 1e-3‖a‖², Walker2d's healthy
    /// condition; frame skip 4; observation as [`EnvKind::Walker2DRandDirec`].
    Walker2DRandParams,
    /// Humanoid, task a unit direction d in the plane: reward 0.25·d·Δcom_xy/dt − 0.1‖a‖² −
    /// min(5e-7‖cfrc_ext‖², 10) + 5, healthy while 1 < z < 2; frame skip 5; observation as
    /// Humanoid-v5 (348).
    HumanoidRandDirec2D,
    /// Ant, task a unit direction d in the plane (ProMP's `AntRandDirec2DEnv`): reward
    /// d·Δxy/dt − 0.5‖a‖² − 5e-4·Σclip(cfrc_ext, ±1)² + 1, with Δxy the torso's displacement;
    /// termination, reset noise and observation as [`EnvKind::AntRandDirec`], whose task
    /// d = +1 is this one's d = (1, 0).
    AntRandDirec2D,
}

/// How a family's tasks are parameterised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskKind {
    /// `[d]`, d ∈ {−1, +1}.
    Direction,
    /// `[gx, gy]`, uniform in a disk of radius 3.
    Goal,
    /// `[cos θ, sin θ]`, θ uniform.
    Direction2D,
    /// Exponents u ~ U(−3, 3) for every scaled parameter (see [`LocomotionEnv`]).
    Params,
}

/// Reset noise as in the Gymnasium v5 env of the robot.
#[derive(Clone, Copy, Debug)]
enum ResetNoise {
    /// qpos + U(−s, s), qvel + s·N(0, 1) (HalfCheetah, Ant).
    UniformNormal(f64),
    /// qpos + U(−s, s), qvel + U(−s, s) (Walker2d, Hopper, Humanoid).
    Uniform(f64),
}

/// Range of the exponents u of the randomised-parameter tasks.
pub const PARAM_EXPONENT_RANGE: f64 = 3.0;
/// Base of the mass, inertia and friction multipliers (multiplier = base^u).
pub const PARAM_BASE: f64 = 1.5;
/// Base of the damping multipliers.
pub const DAMPING_BASE: f64 = 1.3;
/// Radius of the AntRandGoal goal disk.
pub const GOAL_RADIUS: f64 = 3.0;

impl EnvKind {
    /// All families, in the order of [`EnvKind::NAMES`].
    pub const ALL: [EnvKind; 8] = [
        EnvKind::HalfCheetahRandDirec,
        EnvKind::AntRandDirec,
        EnvKind::AntRandGoal,
        EnvKind::Walker2DRandDirec,
        EnvKind::HopperRandParams,
        EnvKind::Walker2DRandParams,
        EnvKind::HumanoidRandDirec2D,
        EnvKind::AntRandDirec2D,
    ];

    /// Command-line names.
    pub const NAMES: [&'static str; 8] = [
        "half-cheetah-rand-direc",
        "ant-rand-direc",
        "ant-rand-goal",
        "walker2d-rand-direc",
        "hopper-rand-params",
        "walker2d-rand-params",
        "humanoid-rand-direc-2d",
        "ant-rand-direc-2d",
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::NAMES[i]
    }

    /// Parse a command-line name.
    ///
    /// # Errors
    /// [`MujocoError::UnknownEnv`] listing the known names.
    pub fn from_name(name: &str) -> Result<Self, MujocoError> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| MujocoError::UnknownEnv { name: name.to_string(), known: Self::NAMES.join(", ") })
    }

    /// The Gymnasium 1.4.0 model file.
    pub fn xml_file(self) -> &'static str {
        match self {
            Self::HalfCheetahRandDirec => "half_cheetah.xml",
            Self::AntRandDirec | Self::AntRandGoal | Self::AntRandDirec2D => "ant.xml",
            Self::Walker2DRandDirec | Self::Walker2DRandParams => "walker2d_v5.xml",
            Self::HopperRandParams => "hopper.xml",
            Self::HumanoidRandDirec2D => "humanoid.xml",
        }
    }

    /// Physics steps per environment step.
    pub fn frame_skip(self) -> usize {
        match self {
            Self::Walker2DRandDirec => 8,
            Self::HopperRandParams | Self::Walker2DRandParams => 4,
            _ => 5,
        }
    }

    fn task_kind(self) -> TaskKind {
        match self {
            Self::HalfCheetahRandDirec | Self::AntRandDirec | Self::Walker2DRandDirec => TaskKind::Direction,
            Self::AntRandGoal => TaskKind::Goal,
            Self::HumanoidRandDirec2D | Self::AntRandDirec2D => TaskKind::Direction2D,
            Self::HopperRandParams | Self::Walker2DRandParams => TaskKind::Params,
        }
    }

    fn reset_noise(self) -> ResetNoise {
        match self {
            Self::HalfCheetahRandDirec | Self::AntRandDirec | Self::AntRandGoal | Self::AntRandDirec2D => {
                ResetNoise::UniformNormal(0.1)
            }
            Self::Walker2DRandDirec | Self::HopperRandParams | Self::Walker2DRandParams => {
                ResetNoise::Uniform(5e-3)
            }
            Self::HumanoidRandDirec2D => ResetNoise::Uniform(1e-2),
        }
    }
}

/// The current task, decoded.
#[derive(Clone, Debug, PartialEq)]
enum Task {
    Direction(f64),
    Goal([f64; 2]),
    Direction2D([f64; 2]),
    Params(Vec<f64>),
}

/// A MuJoCo locomotion meta-task environment (one of [`EnvKind`]).
///
/// Tasks are `Vec<f64>`: `[d]` for the direction tasks, `[gx, gy]` for AntRandGoal,
/// `[dx, dy]` (unit) for HumanoidRandDirec2D and AntRandDirec2D, and for the randomised-parameter tasks the
/// exponents u ∈ [−3, 3] (multiplier = 1.5^u, 1.3^u for damping) laid out as
/// `body_mass (nbody) ⊕ body_inertia (3·nbody) ⊕ dof_damping (nv) ⊕ geom_friction (3·ngeom)`
/// (ProMP's per-element scheme). Each parameter task scales the model's *original* values,
/// which are kept, so switching tasks never compounds and an all-zero task restores them.
///
/// Alive bonuses are added on every step, terminal steps included (ProMP's convention;
/// Gymnasium v5 drops it on the terminal step).
#[derive(Clone, Debug)]
pub struct LocomotionEnv {
    kind: EnvKind,
    sim: Sim,
    task: Task,
    original: PhysParams,
    obs_dim: usize,
    /// Observation buffer reused across steps.
    scratch: Vec<f64>,
}

fn sq_norm(a: &[f64]) -> f64 {
    a.iter().map(|v| v * v).sum()
}

impl LocomotionEnv {
    /// Load the robot of `kind` with its default task (direction +1, goal at the origin,
    /// direction (1, 0), or original parameters).
    ///
    /// # Errors
    /// As [`Sim::load`].
    pub fn new(kind: EnvKind) -> Result<Self, MujocoError> {
        Self::new_in(kind, &super::assets_dir())
    }

    /// [`LocomotionEnv::new`] with the model file read from the directory `assets` (instead
    /// of [`super::assets_dir`]).
    ///
    /// # Errors
    /// As [`Sim::load_path`].
    pub fn new_in(kind: EnvKind, assets: &std::path::Path) -> Result<Self, MujocoError> {
        let sim = Sim::load_path(&assets.join(kind.xml_file()), kind.frame_skip())?;
        let original = sim.params();
        let task = match kind.task_kind() {
            TaskKind::Direction => Task::Direction(1.0),
            TaskKind::Goal => Task::Goal([0.0, 0.0]),
            TaskKind::Direction2D => Task::Direction2D([1.0, 0.0]),
            TaskKind::Params => Task::Params(vec![0.0; Self::param_task_len(&original)]),
        };
        let mut env = Self { kind, sim, task, original, obs_dim: 0, scratch: Vec::new() };
        env.obs_dim = env.observation().len();
        Ok(env)
    }

    fn param_task_len(p: &PhysParams) -> usize {
        p.body_mass.len() + 3 * p.body_inertia.len() + p.dof_damping.len() + 3 * p.geom_friction.len()
    }

    /// Which family this is.
    pub fn kind(&self) -> EnvKind {
        self.kind
    }

    /// The simulator (state, model).
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The simulator, mutably (e.g. to step raw physics in benchmarks). Parameters changed
    /// through it are overwritten by the next parameter task.
    pub fn sim_mut(&mut self) -> &mut Sim {
        &mut self.sim
    }

    /// The model's original physical parameters (before any task scaled them).
    pub fn original_params(&self) -> &PhysParams {
        &self.original
    }

    /// Length of a task vector of this family.
    pub fn task_dim(&self) -> usize {
        match self.kind.task_kind() {
            TaskKind::Direction => 1,
            TaskKind::Goal | TaskKind::Direction2D => 2,
            TaskKind::Params => Self::param_task_len(&self.original),
        }
    }

    /// Switch to `task`, validating it.
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] (field `task`) for a wrong length or a value out of its
    /// domain: d ∉ {±1}, a non-finite goal, a direction of norm ≠ 1, an exponent outside
    /// [−3, 3]. The env keeps its previous task then.
    pub fn try_set_task(&mut self, task: &[f64]) -> Result<(), MujocoError> {
        let bad = |message: String| MujocoError::InvalidArgument { field: "task", message };
        if task.len() != self.task_dim() {
            return Err(bad(format!(
                "{} expects a task of length {}, got {}",
                self.kind.name(),
                self.task_dim(),
                task.len()
            )));
        }
        let new = match self.kind.task_kind() {
            TaskKind::Direction => {
                if task[0] != 1.0 && task[0] != -1.0 {
                    return Err(bad(format!("direction must be +1 or -1, got {}", task[0])));
                }
                Task::Direction(task[0])
            }
            TaskKind::Goal => {
                if !task.iter().all(|v| v.is_finite()) {
                    return Err(bad(format!("goal must be finite, got {task:?}")));
                }
                Task::Goal([task[0], task[1]])
            }
            TaskKind::Direction2D => {
                let n = sq_norm(task).sqrt();
                if !n.is_finite() || (n - 1.0).abs() > 1e-6 {
                    return Err(bad(format!("direction must be a unit vector, got {task:?}")));
                }
                Task::Direction2D([task[0], task[1]])
            }
            TaskKind::Params => {
                if let Some((i, v)) =
                    task.iter().enumerate().find(|(_, v)| v.is_nan() || v.abs() > PARAM_EXPONENT_RANGE)
                {
                    return Err(bad(format!(
                        "exponent {i} is {v}; must lie in [-{PARAM_EXPONENT_RANGE}, {PARAM_EXPONENT_RANGE}]"
                    )));
                }
                self.sim.set_params(&self.scaled_params(task))?;
                Task::Params(task.to_vec())
            }
        };
        self.task = new;
        Ok(())
    }

    /// The original parameters scaled by the task exponents `u` (see [`LocomotionEnv`]).
    fn scaled_params(&self, u: &[f64]) -> PhysParams {
        let o = &self.original;
        let (nb, nv) = (o.body_mass.len(), o.dof_damping.len());
        let (mass_u, rest) = u.split_at(nb);
        let (inertia_u, rest) = rest.split_at(3 * nb);
        let (damping_u, friction_u) = rest.split_at(nv);
        let scale3 = |vals: &[[f64; 3]], us: &[f64]| -> Vec<[f64; 3]> {
            vals.iter()
                .zip(us.chunks_exact(3))
                .map(|(v, e)| [0, 1, 2].map(|k| v[k] * PARAM_BASE.powf(e[k])))
                .collect()
        };
        PhysParams {
            body_mass: o.body_mass.iter().zip(mass_u).map(|(m, e)| m * PARAM_BASE.powf(*e)).collect(),
            body_inertia: scale3(&o.body_inertia, inertia_u),
            dof_damping: o
                .dof_damping
                .iter()
                .zip(damping_u)
                .map(|(d, e)| d * DAMPING_BASE.powf(*e))
                .collect(),
            geom_friction: scale3(&o.geom_friction, friction_u),
        }
    }

    /// Put the robot in state (`qpos`, `qvel`) as Gymnasium's `reset` + `set_state` do.
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] for wrong lengths.
    pub fn reset_to(&mut self, qpos: &[f64], qvel: &[f64]) -> Result<(), MujocoError> {
        self.sim.reset_to(qpos, qvel)
    }

    /// The observation of the current state (Gymnasium v5's for this robot).
    pub fn observation(&self) -> Vec<f64> {
        let mut obs = Vec::with_capacity(self.obs_dim);
        self.fill_observation(&mut obs);
        obs
    }

    /// Copies the observation into `obs` (of length `obs_dim`) through the reused buffer.
    fn write_observation(&mut self, obs: &mut [f64]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.fill_observation(&mut scratch);
        obs.copy_from_slice(&scratch);
        self.scratch = scratch;
    }

    /// Write the observation into `obs` (cleared first; no allocation once it has capacity).
    fn fill_observation(&self, obs: &mut Vec<f64>) {
        obs.clear();
        let (qpos, qvel) = (self.sim.qpos(), self.sim.qvel());
        match self.kind {
            EnvKind::HalfCheetahRandDirec => {
                obs.extend_from_slice(&qpos[1..]);
                obs.extend_from_slice(qvel);
            }
            EnvKind::AntRandDirec | EnvKind::AntRandGoal | EnvKind::AntRandDirec2D => {
                obs.extend_from_slice(&qpos[2..]);
                obs.extend_from_slice(qvel);
                for f in &self.sim.cfrc_ext()[1..] {
                    obs.extend(f.iter().map(|v| v.clamp(-1.0, 1.0)));
                }
            }
            EnvKind::Walker2DRandDirec | EnvKind::HopperRandParams | EnvKind::Walker2DRandParams => {
                obs.extend_from_slice(&qpos[1..]);
                obs.extend(qvel.iter().map(|v| v.clamp(-10.0, 10.0)));
            }
            EnvKind::HumanoidRandDirec2D => {
                obs.extend_from_slice(&qpos[2..]);
                obs.extend_from_slice(qvel);
                for c in &self.sim.cinert()[1..] {
                    obs.extend_from_slice(c);
                }
                for c in &self.sim.cvel()[1..] {
                    obs.extend_from_slice(c);
                }
                obs.extend_from_slice(&self.sim.qfrc_actuator()[6..]);
                for c in &self.sim.cfrc_ext()[1..] {
                    obs.extend_from_slice(c);
                }
            }
        }
    }

    /// The position the forward reward differentiates: x (planar robots), the torso's xy
    /// (Ant) or the centre of mass's xy (Humanoid).
    fn progress_point(&self) -> [f64; 2] {
        match self.kind {
            EnvKind::AntRandDirec | EnvKind::AntRandGoal | EnvKind::AntRandDirec2D => {
                let p = self.sim.body_xpos(1).unwrap_or([0.0; 3]);
                [p[0], p[1]]
            }
            EnvKind::HumanoidRandDirec2D => {
                let c = self.sim.mass_center();
                [c[0], c[1]]
            }
            _ => [self.sim.qpos()[0], 0.0],
        }
    }

    /// Ant's contact cost: 5e-4·Σ clip(cfrc_ext, ±1)² over all bodies.
    pub fn ant_contact_cost(&self) -> f64 {
        5e-4 * self.sim.cfrc_ext().iter().flatten().map(|v| v.clamp(-1.0, 1.0).powi(2)).sum::<f64>()
    }

    /// Humanoid's contact cost: min(5e-7·‖cfrc_ext‖², 10).
    pub fn humanoid_contact_cost(&self) -> f64 {
        (5e-7 * self.sim.cfrc_ext().iter().flatten().map(|v| v * v).sum::<f64>()).min(10.0)
    }

    /// Whether the current state is healthy (the episode goes on).
    pub fn is_healthy(&self) -> bool {
        let q = self.sim.qpos();
        match self.kind {
            EnvKind::HalfCheetahRandDirec => true,
            EnvKind::AntRandDirec | EnvKind::AntRandGoal | EnvKind::AntRandDirec2D => {
                let finite = q.iter().chain(self.sim.qvel()).all(|v| v.is_finite());
                finite && (0.2..=1.0).contains(&q[2])
            }
            EnvKind::Walker2DRandDirec | EnvKind::Walker2DRandParams => {
                let (z, angle) = (q[1], q[2]);
                0.8 < z && z < 2.0 && -1.0 < angle && angle < 1.0
            }
            EnvKind::HopperRandParams => {
                let (z, angle) = (q[1], q[2]);
                let state_ok = q[2..].iter().chain(self.sim.qvel()).all(|v| -100.0 < *v && *v < 100.0);
                state_ok && z > 0.7 && -0.2 < angle && angle < 0.2
            }
            EnvKind::HumanoidRandDirec2D => 1.0 < q[2] && q[2] < 2.0,
        }
    }

    /// An error unless `obs` is an observation buffer of this env's length.
    fn check_obs(&self, obs: &[f64]) -> Result<(), MujocoError> {
        if obs.len() == self.obs_dim {
            Ok(())
        } else {
            Err(MujocoError::InvalidArgument {
                field: "obs",
                message: format!("buffer length {}, expected {}", obs.len(), self.obs_dim),
            })
        }
    }

    /// One environment step; writes the observation into `obs`.
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] if `action` or `obs` has the wrong length.
    pub fn try_step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<Step, MujocoError> {
        self.check_obs(obs)?;
        let before = self.progress_point();
        self.sim.step(action)?;
        let after = self.progress_point();
        let dt = self.sim.dt();
        let vel = [(after[0] - before[0]) / dt, (after[1] - before[1]) / dt];
        let a2 = sq_norm(action);
        let healthy = self.is_healthy();
        let reward = match (&self.task, self.kind) {
            (Task::Direction(d), EnvKind::HalfCheetahRandDirec) => d * vel[0] - 0.05 * a2,
            (Task::Direction(d), EnvKind::AntRandDirec) => {
                d * vel[0] - 0.5 * a2 - self.ant_contact_cost() + 1.0
            }
            (Task::Goal(g), _) => {
                let p = self.progress_point();
                -((p[0] - g[0]).abs() + (p[1] - g[1]).abs()) - 0.1 * a2 - self.ant_contact_cost()
            }
            (Task::Direction(d), _) => d * vel[0] + 1.0 - 1e-3 * a2,
            (Task::Params(_), _) => vel[0] + 1.0 - 1e-3 * a2,
            (Task::Direction2D(d), EnvKind::AntRandDirec2D) => {
                (d[0] * vel[0] + d[1] * vel[1]) - 0.5 * a2 - self.ant_contact_cost() + 1.0
            }
            (Task::Direction2D(d), _) => {
                0.25 * (d[0] * vel[0] + d[1] * vel[1]) - 0.1 * a2 - self.humanoid_contact_cost() + 5.0
            }
        };
        self.write_observation(obs);
        Ok(Step { reward, done: !healthy })
    }

    /// Draw a reset state with Gymnasium v5's reset noise for this robot.
    fn noisy_initial_state(&self, rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<f64>) {
        let mut qpos = self.sim.init_qpos().to_vec();
        let mut qvel = self.sim.init_qvel().to_vec();
        match self.kind.reset_noise() {
            ResetNoise::UniformNormal(s) => {
                qpos.iter_mut().for_each(|q| *q += rng.random_range(-s..s));
                qvel.iter_mut().for_each(|v| {
                    let n: f64 = StandardNormal.sample(rng);
                    *v += s * n
                });
            }
            ResetNoise::Uniform(s) => {
                qpos.iter_mut().for_each(|q| *q += rng.random_range(-s..s));
                qvel.iter_mut().for_each(|v| *v += rng.random_range(-s..s));
            }
        }
        (qpos, qvel)
    }
}

impl MetaEnv for LocomotionEnv {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    fn act_dim(&self) -> usize {
        self.sim.nu()
    }

    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        self.sim.ctrl_range()
    }

    fn sample_tasks(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        let dim = self.task_dim();
        (0..n)
            .map(|_| match self.kind.task_kind() {
                TaskKind::Direction => vec![if rng.random::<bool>() { 1.0 } else { -1.0 }],
                TaskKind::Goal => {
                    let angle = rng.random_range(0.0..std::f64::consts::TAU);
                    let r = GOAL_RADIUS * rng.random::<f64>().sqrt();
                    vec![r * angle.cos(), r * angle.sin()]
                }
                TaskKind::Direction2D => {
                    let angle = rng.random_range(0.0..std::f64::consts::TAU);
                    vec![angle.cos(), angle.sin()]
                }
                TaskKind::Params => {
                    (0..dim).map(|_| rng.random_range(-PARAM_EXPONENT_RANGE..=PARAM_EXPONENT_RANGE)).collect()
                }
            })
            .collect()
    }

    /// [`LocomotionEnv::try_set_task`] with the crate's error type.
    fn set_task(&mut self, task: &[f64]) -> crate::error::Result<()> {
        Ok(self.try_set_task(task)?)
    }

    fn reset(&mut self, rng: &mut ChaCha8Rng, obs: &mut [f64]) -> crate::error::Result<()> {
        self.check_obs(obs)?;
        let (qpos, qvel) = self.noisy_initial_state(rng);
        self.sim.reset_to(&qpos, &qvel)?;
        self.write_observation(obs);
        Ok(())
    }

    /// [`LocomotionEnv::try_step`] with the crate's error type.
    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> crate::error::Result<Step> {
        Ok(self.try_step(action, obs)?)
    }

    fn boxed_clone(&self) -> Box<dyn MetaEnv> {
        Box::new(self.clone())
    }

    /// The task vector as [`LocomotionEnv::try_set_task`] takes it.
    fn current_task(&self) -> Option<Vec<f64>> {
        Some(match &self.task {
            Task::Direction(d) => vec![*d],
            Task::Goal(g) | Task::Direction2D(g) => g.to_vec(),
            Task::Params(u) => u.clone(),
        })
    }
}
