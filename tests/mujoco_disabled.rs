//! Without the `mujoco` feature, asking for a MuJoCo environment gives an error that says how
//! to enable it.
#![cfg(not(feature = "mujoco"))]

#[test]
fn mujoco_env_without_feature_explains_how_to_enable_it() {
    let err = metagrad::envs::make_mujoco_env("half-cheetah-rand-direc")
        .err()
        .expect("no MuJoCo in this build")
        .to_string();
    assert!(err.contains("scripts/install-mujoco.sh"), "{err}");
    assert!(err.contains("--features mujoco"), "{err}");
}
