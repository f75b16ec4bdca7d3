"""Reference trajectories from Gymnasium's v5 MuJoCo envs, for tests/mujoco_parity.rs.

For each robot: build the Gymnasium v5 env with the frame skip (and reward weights) of the
matching metagrad meta-task, optionally scale the physical parameters as a
randomised-parameter task does, reset, put the robot in a fixed, seeded initial state
(`set_state`), apply a fixed, seeded action sequence, and record per step qpos, qvel,
observation, reward and termination. Written as JSON (floats round-trip exactly).

Run with the project venv:  .deps/venv/bin/python tests/parity/gym_reference.py OUT.json
"""

import json
import sys

import gymnasium as gym
import mujoco
import numpy as np

STEPS = 60

# (metagrad env, Gymnasium id, make kwargs, initial-state noise, task, compare reward?)
CASES = [
    ("half-cheetah-rand-direc", "HalfCheetah-v5",
     dict(frame_skip=5, ctrl_cost_weight=0.05), 0.1, [1.0], "gym"),
    ("ant-rand-direc", "Ant-v5", dict(frame_skip=5), 0.1, [1.0], "gym"),
    ("ant-rand-goal", "Ant-v5", dict(frame_skip=5), 0.1, [1.5, -2.0], "goal"),
    ("walker2d-rand-direc", "Walker2d-v5", dict(frame_skip=8), 0.1, [1.0], "gym"),
    ("hopper-rand-params", "Hopper-v5", dict(frame_skip=4), 0.1, "zeros", "gym"),
    ("hopper-rand-params", "Hopper-v5", dict(frame_skip=4), 0.1, "random", "gym"),
    ("walker2d-rand-params", "Walker2d-v5", dict(frame_skip=4), 0.1, "zeros", "gym"),
    ("walker2d-rand-params", "Walker2d-v5", dict(frame_skip=4), 0.1, "random", "gym"),
    ("humanoid-rand-direc-2d", "Humanoid-v5",
     dict(frame_skip=5, forward_reward_weight=0.25), 0.01, [1.0, 0.0], "gym"),
    ("ant-rand-direc-2d", "Ant-v5", dict(frame_skip=5), 0.1, [1.0, 0.0], "gym"),
]


def param_task_len(model):
    return model.nbody * 4 + model.nv + model.ngeom * 3


def apply_param_task(env, u):
    """Scale mass/inertia/friction by 1.5**u and damping by 1.3**u, per element, in
    metagrad's layout: body_mass, body_inertia, dof_damping, geom_friction."""
    m, d = env.unwrapped.model, env.unwrapped.data
    nb, nv, ng = m.nbody, m.nv, m.ngeom
    u = np.asarray(u)
    i = 0
    m.body_mass[:] = m.body_mass * 1.5 ** u[i:i + nb]
    i += nb
    m.body_inertia[:] = m.body_inertia * 1.5 ** u[i:i + 3 * nb].reshape(nb, 3)
    i += 3 * nb
    m.dof_damping[:] = m.dof_damping * 1.3 ** u[i:i + nv]
    i += nv
    m.geom_friction[:] = m.geom_friction * 1.5 ** u[i:i + 3 * ng].reshape(ng, 3)
    mujoco.mj_setConst(m, d)


def run_case(index, name, gym_id, kwargs, noise, task, reward_mode):
    env = gym.make(gym_id, **kwargs)
    raw = env.unwrapped
    rng = np.random.default_rng(1000 + index)
    if task == "zeros":
        task = [0.0] * param_task_len(raw.model)
    elif task == "random":
        task = list(rng.uniform(-3.0, 3.0, size=param_task_len(raw.model)))
    if name.endswith("rand-params"):
        apply_param_task(env, task)
    env.reset(seed=index)
    qpos0 = raw.init_qpos + rng.uniform(-noise, noise, size=raw.model.nq)
    qvel0 = raw.init_qvel + noise * rng.standard_normal(raw.model.nv)
    raw.set_state(qpos0, qvel0)
    obs0 = raw._get_obs()
    low, high = raw.model.actuator_ctrlrange.T
    actions = rng.uniform(low, high, size=(STEPS, raw.model.nu))
    out = dict(env=name, gym_id=gym_id, kwargs=kwargs, task=[float(t) for t in task],
               qpos0=qpos0.tolist(), qvel0=qvel0.tolist(), obs0=obs0.tolist(),
               actions=actions.tolist(), qpos=[], qvel=[], obs=[], reward=[],
               terminated=[])
    for a in actions:
        obs, reward, terminated, _, info = raw.step(np.asarray(a, dtype=np.float64))
        if reward_mode == "goal":
            # AntRandGoal: -|xy - goal|_1 - 0.1|a|^2 - contact cost, from Gymnasium's data.
            xy = raw.data.body(1).xpos[:2]
            reward = (-np.abs(xy - np.asarray(task)).sum() - 0.1 * np.square(a).sum()
                      + info["reward_contact"])
        out["qpos"].append(raw.data.qpos.tolist())
        out["qvel"].append(raw.data.qvel.tolist())
        out["obs"].append(np.asarray(obs).tolist())
        out["reward"].append(float(reward))
        out["terminated"].append(bool(terminated))
    env.close()
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gym_reference.py OUT.json")
    cases = [run_case(i, *c) for i, c in enumerate(CASES)]
    doc = dict(mujoco_version=mujoco.__version__, gymnasium_version=gym.__version__,
               steps=STEPS, cases=cases)
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
