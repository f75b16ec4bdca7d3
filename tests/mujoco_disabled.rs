//! Without the `mujoco` feature, asking for a MuJoCo environment gives an error that says how
//! to enable it, and an unknown name is named unknown with the valid names listed.
#![cfg(not(feature = "mujoco"))]

#[test]
fn mujoco_env_without_feature_explains_how_to_enable_it() {
    let err = metagrad::envs::make_env("half-cheetah-rand-direc", None)
        .err()
        .expect("no MuJoCo in this build")
        .to_string();
    assert!(err.contains("scripts/install-mujoco.sh"), "{err}");
    assert!(err.contains("--features mujoco"), "{err}");
}

#[test]
fn an_unknown_env_is_unknown_without_mujoco_too() {
    let err = metagrad::envs::make_env("nope", None).err().expect("no such env").to_string();
    assert!(err.contains("unknown environment \"nope\""), "{err}");
    assert!(err.contains("point-corners") && err.contains("ant-rand-goal"), "{err}");
    assert!(!err.contains("needs MuJoCo"), "{err}");
}
