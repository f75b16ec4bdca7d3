//! A thin simulator wrapper over one MuJoCo model and its data.
//!
//! It steps exactly as Gymnasium's `MujocoEnv` does: `ctrl ← action`, `mj_step` repeated
//! `frame_skip` times, then `mj_rnePostConstraint` (which fills `cfrc_ext`), and sets a state as
//! Gymnasium's `reset` + `set_state` do (`mj_resetData`, write qpos/qvel, `mj_forward`), so that
//! both produce the same floating-point state from the same inputs.

use std::collections::BTreeSet;
use std::ffi::{CStr, c_char};
use std::path::Path;
use std::sync::{Mutex, Once};

use mujoco_rs::prelude::{MjData, MjModel};

use super::{MujocoError, assets_dir};

/// Physical parameters of a model that the randomised-parameter tasks scale.
#[derive(Clone, Debug, PartialEq)]
pub struct PhysParams {
    /// `body_mass`, one per body.
    pub body_mass: Vec<f64>,
    /// `body_inertia` (diagonal inertia), three per body.
    pub body_inertia: Vec<[f64; 3]>,
    /// `dof_damping`, one per degree of freedom.
    pub dof_damping: Vec<f64>,
    /// `geom_friction` (slide, spin, roll), three per geom.
    pub geom_friction: Vec<[f64; 3]>,
}

/// Warnings MuJoCo has reported in this process (each is printed once).
static SEEN_WARNINGS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// MuJoCo's warning callback: prints each distinct message once to stderr. MuJoCo's default
/// handler prints every occurrence and appends it to `MUJOCO_LOG.TXT` in the working
/// directory; Gymnasium's half_cheetah.xml alone triggers a deprecation warning
/// (`settotalmass`) at every model load, i.e. for every environment copy.
unsafe extern "C" fn warn_once(msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    // SAFETY: MuJoCo passes a NUL-terminated message that lives for the call.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned();
    let mut seen = SEEN_WARNINGS.lock().unwrap_or_else(|e| e.into_inner());
    if seen.insert(text.clone()) {
        eprintln!("MuJoCo warning (shown once): {text}");
    }
}

/// Installs [`warn_once`] as MuJoCo's warning handler (once per process).
fn install_warning_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handler is set before any model in this process is loaded by
        // metagrad, from one thread (`Once`); the callback is thread-safe (a mutex).
        unsafe { mujoco_rs::mujoco_c::mju_user_warning = Some(warn_once) };
    });
}

/// The distinct MuJoCo warnings reported so far in this process, sorted.
pub fn warnings_seen() -> Vec<String> {
    SEEN_WARNINGS.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
}

/// One MuJoCo model with its simulation data and a frame skip.
#[derive(Debug)]
pub struct Sim {
    data: MjData<Box<MjModel>>,
    frame_skip: usize,
    init_qpos: Vec<f64>,
    init_qvel: Vec<f64>,
}

impl Clone for Sim {
    fn clone(&self) -> Self {
        Self {
            data: self.data.clone(),
            frame_skip: self.frame_skip,
            init_qpos: self.init_qpos.clone(),
            init_qvel: self.init_qvel.clone(),
        }
    }
}

impl Sim {
    /// Load `xml_file` (e.g. `"half_cheetah.xml"`) from the assets directory
    /// ([`assets_dir`]).
    ///
    /// # Errors
    /// [`MujocoError::AssetMissing`] if the file does not exist, [`MujocoError::Load`] if MuJoCo
    /// rejects it, [`MujocoError::InvalidArgument`] if `frame_skip` is 0.
    pub fn load(xml_file: &str, frame_skip: usize) -> Result<Self, MujocoError> {
        Self::load_path(&assets_dir().join(xml_file), frame_skip)
    }

    /// Load a model from an explicit XML path.
    ///
    /// # Errors
    /// As [`Sim::load`].
    pub fn load_path(path: &Path, frame_skip: usize) -> Result<Self, MujocoError> {
        if frame_skip == 0 {
            return Err(MujocoError::InvalidArgument {
                field: "frame_skip",
                message: "must be at least 1 (got 0)".into(),
            });
        }
        if !path.is_file() {
            return Err(MujocoError::AssetMissing(path.to_path_buf()));
        }
        install_warning_handler();
        let model = MjModel::from_xml(path)
            .map_err(|e| MujocoError::Load { path: path.to_path_buf(), message: e.to_string() })?;
        let data = MjData::try_new(Box::new(model))
            .map_err(|e| MujocoError::Load { path: path.to_path_buf(), message: e.to_string() })?;
        let init_qpos = data.qpos().to_vec();
        let init_qvel = data.qvel().to_vec();
        Ok(Self { data, frame_skip, init_qpos, init_qvel })
    }

    /// Number of generalised coordinates (length of qpos).
    pub fn nq(&self) -> usize {
        self.init_qpos.len()
    }

    /// Number of degrees of freedom (length of qvel).
    pub fn nv(&self) -> usize {
        self.init_qvel.len()
    }

    /// Number of controls (length of ctrl).
    pub fn nu(&self) -> usize {
        self.data.ctrl().len()
    }

    /// Number of bodies, the world body included.
    pub fn nbody(&self) -> usize {
        self.data.xpos().len()
    }

    /// Simulation steps per environment step.
    pub fn frame_skip(&self) -> usize {
        self.frame_skip
    }

    /// Length of one environment step in simulated seconds (`timestep × frame_skip`).
    pub fn dt(&self) -> f64 {
        self.data.model().opt().timestep * self.frame_skip as f64
    }

    /// The model's qpos0 (the initial positions Gymnasium adds reset noise to).
    pub fn init_qpos(&self) -> &[f64] {
        &self.init_qpos
    }

    /// The initial velocities (zero for the robots used here).
    pub fn init_qvel(&self) -> &[f64] {
        &self.init_qvel
    }

    /// Current positions.
    pub fn qpos(&self) -> &[f64] {
        self.data.qpos()
    }

    /// Current velocities.
    pub fn qvel(&self) -> &[f64] {
        self.data.qvel()
    }

    /// Current controls.
    pub fn ctrl(&self) -> &[f64] {
        self.data.ctrl()
    }

    /// Com-based external forces per body (valid after [`Sim::step`] or [`Sim::set_state`]).
    pub fn cfrc_ext(&self) -> &[[f64; 6]] {
        self.data.cfrc_ext()
    }

    /// Com-based body inertias per body.
    pub fn cinert(&self) -> &[[f64; 10]] {
        self.data.cinert()
    }

    /// Com-based body velocities per body.
    pub fn cvel(&self) -> &[[f64; 6]] {
        self.data.cvel()
    }

    /// Actuator forces in joint space.
    pub fn qfrc_actuator(&self) -> &[f64] {
        self.data.qfrc_actuator()
    }

    /// Cartesian position of body `body`'s frame, if the index is valid.
    pub fn body_xpos(&self, body: usize) -> Option<[f64; 3]> {
        self.data.xpos().get(body).copied()
    }

    /// Mass-weighted mean of the bodies' centres of mass (Gymnasium's `mass_center`).
    pub fn mass_center(&self) -> [f64; 3] {
        let mass = self.data.model().body_mass();
        let xipos = self.data.xipos();
        let mut total = 0.0;
        let mut c = [0.0; 3];
        for (m, x) in mass.iter().zip(xipos) {
            total += m;
            for k in 0..3 {
                c[k] += m * x[k];
            }
        }
        c.map(|v| v / total)
    }

    /// Actuator control ranges `(low, high)` (Gymnasium's action space bounds).
    pub fn ctrl_range(&self) -> (Vec<f64>, Vec<f64>) {
        let r = self.data.model().actuator_ctrlrange();
        (r.iter().map(|b| b[0]).collect(), r.iter().map(|b| b[1]).collect())
    }

    /// Set the state as Gymnasium's `reset` followed by `set_state` does: reset all data
    /// (time, warm start, controls), write `qpos`/`qvel`, run `mj_forward`.
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] if a length differs from nq / nv.
    pub fn reset_to(&mut self, qpos: &[f64], qvel: &[f64]) -> Result<(), MujocoError> {
        self.check_len("qpos", qpos.len(), self.nq())?;
        self.check_len("qvel", qvel.len(), self.nv())?;
        self.data.reset();
        self.data.qpos_mut().copy_from_slice(qpos);
        self.data.qvel_mut().copy_from_slice(qvel);
        self.data.forward();
        Ok(())
    }

    /// Write `qpos`/`qvel` and run `mj_forward`, keeping the rest of the data (Gymnasium's
    /// `set_state`).
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] if a length differs from nq / nv.
    pub fn set_state(&mut self, qpos: &[f64], qvel: &[f64]) -> Result<(), MujocoError> {
        self.check_len("qpos", qpos.len(), self.nq())?;
        self.check_len("qvel", qvel.len(), self.nv())?;
        self.data.qpos_mut().copy_from_slice(qpos);
        self.data.qvel_mut().copy_from_slice(qvel);
        self.data.forward();
        Ok(())
    }

    /// One environment step: set the controls, advance `frame_skip` physics steps, then compute
    /// the post-constraint body forces (`cfrc_ext`).
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] if `ctrl.len()` differs from nu.
    pub fn step(&mut self, ctrl: &[f64]) -> Result<(), MujocoError> {
        self.check_len("action", ctrl.len(), self.nu())?;
        self.data.ctrl_mut().copy_from_slice(ctrl);
        for _ in 0..self.frame_skip {
            self.data.step();
        }
        self.data.rne_post_constraint();
        Ok(())
    }

    /// Set the controls without stepping.
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] if `ctrl.len()` differs from nu.
    pub fn set_ctrl(&mut self, ctrl: &[f64]) -> Result<(), MujocoError> {
        self.check_len("action", ctrl.len(), self.nu())?;
        self.data.ctrl_mut().copy_from_slice(ctrl);
        Ok(())
    }

    /// A single `mj_step` with the current controls (for throughput measurements).
    pub fn raw_step(&mut self) {
        self.data.step();
    }

    /// The parameters that [`Sim::set_params`] changes, as currently set.
    pub fn params(&self) -> PhysParams {
        let m = self.data.model();
        PhysParams {
            body_mass: m.body_mass().to_vec(),
            body_inertia: m.body_inertia().to_vec(),
            dof_damping: m.dof_damping().to_vec(),
            geom_friction: m.geom_friction().to_vec(),
        }
    }

    /// Overwrite body masses and inertias, joint damping and geom friction, recompute the
    /// model's derived constants (`mj_setConst`) and reset the data (the caller sets a new
    /// state afterwards).
    ///
    /// # Errors
    /// [`MujocoError::InvalidArgument`] naming the array whose length is wrong or that holds a
    /// negative or non-finite value.
    pub fn set_params(&mut self, p: &PhysParams) -> Result<(), MujocoError> {
        let nbody = self.nbody();
        let ngeom = self.data.model().geom_friction().len();
        self.check_len("body_mass", p.body_mass.len(), nbody)?;
        self.check_len("body_inertia", p.body_inertia.len(), nbody)?;
        self.check_len("dof_damping", p.dof_damping.len(), self.nv())?;
        self.check_len("geom_friction", p.geom_friction.len(), ngeom)?;
        let checks: [(&'static str, Vec<f64>); 4] = [
            ("body_mass", p.body_mass.clone()),
            ("body_inertia", p.body_inertia.iter().flatten().copied().collect()),
            ("dof_damping", p.dof_damping.clone()),
            ("geom_friction", p.geom_friction.iter().flatten().copied().collect()),
        ];
        for (field, values) in checks {
            if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
                return Err(MujocoError::InvalidArgument {
                    field,
                    message: format!("element {i} is {v}; must be finite and >= 0"),
                });
            }
        }
        // SAFETY: only the values of fixed-size parameter arrays change, never the model's
        // sizes or layout, so the data stays compatible with the model.
        let model = unsafe { self.data.model_mut() };
        model.body_mass_mut().copy_from_slice(&p.body_mass);
        model.body_inertia_mut().copy_from_slice(&p.body_inertia);
        model.dof_damping_mut().copy_from_slice(&p.dof_damping);
        model.geom_friction_mut().copy_from_slice(&p.geom_friction);
        self.data.set_const();
        self.data.reset();
        self.data.forward();
        Ok(())
    }

    /// The underlying MuJoCo data (and, through it, the model).
    pub fn data(&self) -> &MjData<Box<MjModel>> {
        &self.data
    }

    fn check_len(&self, field: &'static str, got: usize, want: usize) -> Result<(), MujocoError> {
        if got == want {
            Ok(())
        } else {
            Err(MujocoError::InvalidArgument { field, message: format!("length {got}, expected {want}") })
        }
    }
}
