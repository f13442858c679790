//! UniPCMultistepScheduler (flow sigmas, WAN 2.1's sampler) against diffusers: schedules for
//! several shifts, orders and step counts (bit for bit), multi-step predictor-corrector solves
//! on rank-3 and rank-5 tensors, the state between steps, and the errors.

use std::{collections::HashMap, path::PathBuf};

use burn::tensor::{Tensor, TensorData};
use dicache_tests::{Cpu, assert_close, fixture, load_fixture, tensor};
use schedulers::{
    FinalSigmasType, SchedulerError, SolverType, UniPcMultistepConfig, UniPcMultistepScheduler,
};
use serde_json::Value;

/// Deviation from diffusers allowed in a solve whose schedule meets a sigma where PyTorch's f32
/// `log` (MKL's) is off by an ulp: the log-SNR step `h` then differs in its last bits, and the
/// samples by up to ~2e-6 after 50 steps (exactly the deviation of diffusers itself run with
/// a correctly rounded log). Elsewhere the port rounds as the reference rounds, and the solves
/// the generator marks `exact_log` are compared bit for bit.
const SOLVE_TOLERANCE: f32 = 2e-6;

fn cases() -> Vec<Value> {
    let path = fixture("unipc/cases.json");
    let text = std::fs::read_to_string(&path).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn scheduler<const D: usize>(config: &str) -> UniPcMultistepScheduler<Cpu, D> {
    UniPcMultistepScheduler::from_file(&fixture(&format!("unipc/{config}")))
        .unwrap_or_else(|e| panic!("{config}: {e}"))
}

/// The scheduler of `case` with its schedule set.
fn scheduled<const D: usize>(case: &Value) -> UniPcMultistepScheduler<Cpu, D> {
    let mut sched = scheduler(case["config"].as_str().unwrap());
    let n = case["num_steps"].as_u64().unwrap() as usize;
    sched.set_timesteps(n).unwrap();
    sched
}

#[test]
fn schedules_match_diffusers() {
    let fx = load_fixture("unipc/schedules.safetensors");
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("solve").is_none()) {
        let key = case["key"].as_str().unwrap();
        let sched = scheduled::<1>(case);
        let sigmas: Vec<f32> = fx[&format!("{key}.sigmas")].iter::<f32>().collect();
        let timesteps: Vec<i64> = fx[&format!("{key}.timesteps")].iter::<i64>().collect();
        let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(sched.sigmas()), bits(&sigmas), "{key} sigmas");
        assert_eq!(sched.timesteps(), timesteps, "{key} timesteps");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} schedule cases");
}

#[test]
fn solves_match_diffusers() {
    let fx = load_fixture("unipc/solve.safetensors");
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("solve").is_some()) {
        let key = case["key"].as_str().unwrap();
        let tolerance = match case["exact_log"].as_bool() {
            Some(true) => 0.0,
            _ => SOLVE_TOLERANCE,
        };
        // Tensors of rank 3 (tokens) and 5 (WAN's video latents).
        match fx[&format!("{key}.sample.0")].shape.len() {
            3 => solve::<3>(&mut scheduled(case), &fx, key, tolerance),
            5 => solve::<5>(&mut scheduled(case), &fx, key, tolerance),
            r => panic!("{key}: rank {r}"),
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} solves");
    assert!(
        cases().iter().any(|c| c["exact_log"] == true),
        "no solve is compared bit for bit"
    );
}

/// Runs the solve `key` with the fixture's model outputs, comparing every sample within
/// `tolerance` (absolute and relative).
fn solve<const D: usize>(
    sched: &mut UniPcMultistepScheduler<Cpu, D>,
    fx: &HashMap<String, TensorData>,
    key: &str,
    tolerance: f32,
) {
    let device = &Default::default();
    let mut sample: Tensor<Cpu, D> = tensor(fx, &format!("{key}.sample.0"), device);
    for i in 0..sched.timesteps().len() {
        assert_eq!(sched.step_index(), i, "{key}");
        let output: Tensor<Cpu, D> = tensor(fx, &format!("{key}.output.{i}"), device);
        sample = sched.step(output, sample).unwrap();
        assert_close(
            sample.clone(),
            &fx[&format!("{key}.sample.{}", i + 1)],
            tolerance,
            tolerance,
            &format!("{key} sample {}", i + 1),
        );
    }
}

/// The final sample of the fixture solve `key` run by `sched` from the start.
fn final_sample<const D: usize>(
    sched: &mut UniPcMultistepScheduler<Cpu, D>,
    fx: &HashMap<String, TensorData>,
    key: &str,
) -> TensorData {
    let device = &Default::default();
    let mut sample: Tensor<Cpu, D> = tensor(fx, &format!("{key}.sample.0"), device);
    for i in 0..sched.timesteps().len() {
        sample = sched
            .step(tensor(fx, &format!("{key}.output.{i}"), device), sample)
            .unwrap();
    }
    sample.into_data()
}

#[test]
fn reset_and_set_timesteps_start_a_new_generation() {
    let fx = load_fixture("unipc/solve.safetensors");
    let key = "wan_480p_solve_10";
    let mut sched = scheduler::<5>("wan_480p");
    sched.set_timesteps(10).unwrap();
    let first = final_sample(&mut sched, &fx, key);
    sched.reset();
    assert_eq!(sched.step_index(), 0);
    assert_eq!(final_sample(&mut sched, &fx, key), first);
    // A step of another generation, then a new schedule: the history is gone.
    let device = &Default::default();
    let x: Tensor<Cpu, 5> = tensor(&fx, &format!("{key}.sample.0"), device);
    sched.reset();
    sched.step(x.clone(), x.clone()).unwrap();
    sched.set_timesteps(10).unwrap();
    assert_eq!(final_sample(&mut sched, &fx, key), first);
}

#[test]
fn wan_preset_is_the_saved_configuration() {
    for (config, shift) in [("wan_480p", 3.0), ("wan_720p", 5.0)] {
        let loaded = UniPcMultistepConfig::from_file(&fixture(&format!("unipc/{config}")))
            .unwrap_or_else(|e| panic!("{config}: {e}"));
        assert_eq!(loaded, UniPcMultistepConfig::wan(shift), "{config}");
    }
    let bh1 = UniPcMultistepConfig::from_file(&fixture("unipc/bh1_sigma_min")).unwrap();
    assert_eq!(bh1.solver_type, SolverType::Bh1);
    assert_eq!(bh1.final_sigmas_type, FinalSigmasType::SigmaMin);
}

#[test]
fn zero_steps_is_an_error() {
    let mut sched = scheduler::<2>("wan_480p");
    let err = sched.set_timesteps(0).unwrap_err();
    assert!(matches!(err, SchedulerError::NoSteps), "{err}");
    assert!(err.to_string().contains("num_steps"), "{err}");
}

#[test]
fn steps_outside_the_schedule_and_bad_shapes_are_errors() {
    let device = Default::default();
    let x = Tensor::<Cpu, 2>::ones([2, 3], &device);
    let mut sched = scheduler::<2>("wan_480p");
    let before = sched.step(x.clone(), x.clone()).unwrap_err();
    assert!(
        matches!(
            before,
            SchedulerError::StepIndex {
                index: 0,
                num_steps: 0
            }
        ),
        "{before}"
    );
    sched.set_timesteps(2).unwrap();
    let y = Tensor::<Cpu, 2>::ones([3, 2], &device);
    let err = sched.step(y.clone(), x.clone()).unwrap_err();
    assert!(matches!(err, SchedulerError::ShapeMismatch { .. }), "{err}");
    sched.step(x.clone(), x.clone()).unwrap();
    let err = sched.step(y.clone(), y).unwrap_err();
    assert!(matches!(err, SchedulerError::HistoryShape { .. }), "{err}");
    assert!(err.to_string().contains("reset"), "{err}");
    sched.step(x.clone(), x.clone()).unwrap();
    let err = sched.step(x.clone(), x).unwrap_err();
    assert!(err.to_string().contains("step index 2"), "{err}");
}

/// Writes `config` (a JSON object) to a temporary `scheduler_config.json`.
fn temp_config(name: &str, config: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dicache-unipc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scheduler_config.json"), config).unwrap();
    dir
}

/// WAN's flow settings, which every file of a supported configuration states.
const FLOW: &str = r#""use_flow_sigmas": true, "prediction_type": "flow_prediction""#;

#[test]
fn unsupported_options_are_named() {
    for (key, value) in [
        ("use_flow_sigmas", "false"),
        ("prediction_type", "\"epsilon\""),
        ("prediction_type", "\"v_prediction\""),
        ("predict_x0", "false"),
        ("thresholding", "true"),
        ("use_karras_sigmas", "true"),
        ("use_exponential_sigmas", "true"),
        ("use_beta_sigmas", "true"),
        ("use_dynamic_shifting", "true"),
        ("solver_type", "\"bh3\""),
        ("final_sigmas_type", "\"sigma_max\""),
        ("beta_schedule", "\"cosine\""),
        ("timestep_spacing", "\"uniform\""),
        ("shift_terminal", "0.1"),
        ("solver_p", "{}"),
        ("solver_order", "4"),
        ("flow_shift", "0.0"),
        ("num_train_timesteps", "0"),
        ("lower_order_final", "false"),
        ("use_some_new_option", "1"),
        ("_class_name", "\"FlowMatchEulerDiscreteScheduler\""),
    ] {
        // The key set last overrides the flow settings.
        let dir = temp_config(key, &format!("{{{FLOW}, \"{key}\": {value}}}"));
        let err = UniPcMultistepScheduler::<Cpu, 2>::from_file(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SchedulerError::Unsupported { .. }),
            "{key}: {msg}"
        );
        assert!(msg.contains(key), "{key}: {msg}");
        assert!(msg.contains("scheduler_config.json"), "{key}: {msg}");
        std::fs::remove_dir_all(dir).unwrap();
    }
    // Absent keys take diffusers' defaults: no flow sigmas, epsilon prediction.
    let dir = temp_config("empty", "{}");
    let err = UniPcMultistepScheduler::<Cpu, 2>::from_file(&dir).unwrap_err();
    assert!(err.to_string().contains("use_flow_sigmas"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
    // B(h) = h would end in NaN with a final sigma of 0.
    let config = UniPcMultistepConfig {
        solver_type: SolverType::Bh1,
        ..UniPcMultistepConfig::wan(3.0)
    };
    let err = UniPcMultistepScheduler::<Cpu, 2>::new(config).unwrap_err();
    assert!(err.to_string().contains("solver_type"), "{err}");
}

#[test]
fn accepted_settings_load() {
    // DPM-Solver's solver names mean bh2; the beta schedule and the null options are inert.
    let dir = temp_config(
        "aliases",
        &format!(
            "{{{FLOW}, \"solver_type\": \"heun\", \"beta_schedule\": \"scaled_linear\", \
             \"trained_betas\": [0.1, 0.2], \"solver_p\": null, \"flow_shift\": 3.0}}"
        ),
    );
    let config = UniPcMultistepConfig::from_file(&dir).unwrap();
    assert_eq!(config, UniPcMultistepConfig::wan(3.0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_values_and_missing_files_name_the_file() {
    let dir = temp_config("type", &format!("{{{FLOW}, \"flow_shift\": \"three\"}}"));
    let err = UniPcMultistepScheduler::<Cpu, 2>::from_file(&dir).unwrap_err();
    assert!(err.to_string().contains("scheduler_config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
    let dir = std::env::temp_dir().join(format!("dicache-unipc-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = UniPcMultistepScheduler::<Cpu, 2>::from_file(&dir).unwrap_err();
    assert!(err.to_string().contains("scheduler_config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
