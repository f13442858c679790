//! FlowMatchEulerDiscreteScheduler against diffusers: schedules (dynamic exponential and linear
//! shift, static shift, custom and default sigmas), `calculate_shift`, NumPy's linspace, and
//! multi-step Euler solves. Every number is expected bit for bit: the port rounds where
//! diffusers rounds.

use std::{collections::HashMap, path::PathBuf};

use burn::tensor::{Tensor, TensorData};
use dicache_tests::{Cpu, assert_close, fixture, load_fixture, tensor};
use schedulers::{
    FlowMatchEulerDiscreteConfig, FlowMatchEulerDiscreteScheduler, SchedulerError, linspace,
};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path = fixture("schedulers/cases.json");
    let text = std::fs::read_to_string(&path).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn scheduler(config: &str) -> FlowMatchEulerDiscreteScheduler {
    FlowMatchEulerDiscreteScheduler::from_file(&fixture(&format!("schedulers/{config}")))
        .unwrap_or_else(|e| panic!("{config}: {e}"))
}

/// The custom sigmas a pipeline passes, by the name the generator gives them.
fn custom_sigmas(kind: &Value, n: usize) -> Option<Vec<f64>> {
    match kind.as_str() {
        Some("flux") => Some(linspace(1.0, 1.0 / n as f64, n)),
        Some("hunyuan") => {
            let mut s = linspace(1.0, 0.0, n + 1);
            s.pop();
            Some(s)
        }
        None => None,
        Some(other) => panic!("unknown sigma kind {other}"),
    }
}

fn i64s(data: &TensorData) -> Vec<i64> {
    data.iter::<i64>().collect()
}

fn bits(values: &[f64]) -> Vec<i64> {
    values.iter().map(|v| v.to_bits() as i64).collect()
}

fn assert_same_f32(actual: &[f32], expected: &TensorData, what: &str) {
    let expected: Vec<f32> = expected.iter::<f32>().collect();
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(a.to_bits(), e.to_bits(), "{what}[{i}]: {a} vs {e}");
    }
}

/// Builds the schedule of one case; returns the scheduler.
fn schedule(case: &Value, fx: &HashMap<String, TensorData>) -> FlowMatchEulerDiscreteScheduler {
    let key = case["key"].as_str().unwrap();
    let mut sched = scheduler(case["config"].as_str().unwrap());
    let n = case["num_steps"].as_u64().unwrap() as usize;
    let mu = match case["image_seq_len"].as_u64() {
        Some(seq_len) => {
            let mu = sched.mu_for_seq_len(seq_len as usize);
            if let Some(expected) = fx.get(&format!("{key}.mu_bits")) {
                assert_eq!(bits(&[mu]), i64s(expected), "{key}: calculate_shift");
            }
            Some(mu)
        }
        None => case["mu"].as_f64(),
    };
    let sigmas = custom_sigmas(&case["sigmas"], n);
    if let (Some(s), Some(expected)) = (&sigmas, fx.get(&format!("{key}.linspace_bits"))) {
        assert_eq!(bits(s), i64s(expected), "{key}: linspace");
    }
    sched
        .set_timesteps(n, sigmas, mu)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    sched
}

#[test]
fn schedules_match_diffusers() {
    let fx = load_fixture("schedulers/schedules.safetensors");
    let cases = cases();
    let mut checked = 0;
    for case in cases.iter().filter(|c| c.get("solve").is_none()) {
        let key = case["key"].as_str().unwrap();
        let sched = schedule(case, &fx);
        assert_same_f32(
            sched.sigmas(),
            &fx[&format!("{key}.sigmas")],
            &format!("{key} sigmas"),
        );
        assert_same_f32(
            sched.timesteps(),
            &fx[&format!("{key}.timesteps")],
            &format!("{key} timesteps"),
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} schedule cases");
}

#[test]
fn euler_solves_match_diffusers() {
    let fx = load_fixture("schedulers/solve.safetensors");
    let cases = cases();
    let solves: Vec<&Value> = cases.iter().filter(|c| c.get("solve").is_some()).collect();
    assert_eq!(solves.len(), 2);
    for case in solves {
        let key = case["key"].as_str().unwrap();
        let sched = schedule(case, &fx);
        // Tensors of rank 3 (FLUX's packed latents) and 5 (video latents).
        match fx[&format!("{key}.sample.0")].shape.len() {
            3 => solve::<3>(&sched, &fx, key),
            5 => solve::<5>(&sched, &fx, key),
            r => panic!("{key}: rank {r}"),
        }
    }
}

/// Runs the solve `key` with the fixture's model outputs, expecting every sample bit for bit.
fn solve<const D: usize>(
    sched: &FlowMatchEulerDiscreteScheduler,
    fx: &HashMap<String, TensorData>,
    key: &str,
) {
    let device = &Default::default();
    let mut sample: Tensor<Cpu, D> = tensor(fx, &format!("{key}.sample.0"), device);
    for i in 0..sched.timesteps().len() {
        let output: Tensor<Cpu, D> = tensor(fx, &format!("{key}.output.{i}"), device);
        sample = sched.step(output, sample, i).unwrap();
        let expected = &fx[&format!("{key}.sample.{}", i + 1)];
        assert_close(
            sample.clone(),
            expected,
            0.0,
            0.0,
            &format!("{key} sample {}", i + 1),
        );
    }
}

#[test]
fn zero_steps_is_an_error() {
    let mut sched = scheduler("hunyuan");
    let err = sched.set_timesteps(0, None, None).unwrap_err();
    assert!(matches!(err, SchedulerError::NoSteps), "{err}");
    assert!(err.to_string().contains("num_steps"), "{err}");
}

#[test]
fn dynamic_shifting_needs_mu() {
    let mut sched = scheduler("flux");
    let err = sched.set_timesteps(4, None, None).unwrap_err();
    assert!(err.to_string().contains("mu"), "{err}");
}

#[test]
fn sigma_count_must_match_steps() {
    let mut sched = scheduler("hunyuan");
    let err = sched
        .set_timesteps(4, Some(vec![1.0, 0.5]), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SchedulerError::SigmasLength {
                num_steps: 4,
                given: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn step_outside_schedule_is_an_error() {
    let device = Default::default();
    let mut sched = scheduler("hunyuan");
    let x = Tensor::<Cpu, 2>::zeros([2, 3], &device);
    let before = sched.step(x.clone(), x.clone(), 0).unwrap_err();
    assert!(
        matches!(before, SchedulerError::StepIndex { .. }),
        "{before}"
    );
    sched.set_timesteps(3, None, None).unwrap();
    assert!(sched.step(x.clone(), x.clone(), 2).is_ok());
    let err = sched.step(x.clone(), x, 3).unwrap_err();
    assert!(err.to_string().contains("step index 3"), "{err}");
    let y = Tensor::<Cpu, 2>::zeros([3, 2], &device);
    let err = sched
        .step(y, Tensor::<Cpu, 2>::zeros([2, 3], &device), 0)
        .unwrap_err();
    assert!(matches!(err, SchedulerError::ShapeMismatch { .. }), "{err}");
}

/// Writes `config` (a JSON object) to a temporary `scheduler_config.json`.
fn temp_config(name: &str, config: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dicache-schedulers-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scheduler_config.json"), config).unwrap();
    dir
}

#[test]
fn unsupported_options_are_named() {
    for (key, value) in [
        ("invert_sigmas", "true"),
        ("use_karras_sigmas", "true"),
        ("use_exponential_sigmas", "true"),
        ("use_beta_sigmas", "true"),
        ("stochastic_sampling", "true"),
        ("shift_terminal", "0.1"),
        ("time_shift_type", "\"cosine\""),
        ("use_some_new_option", "1"),
        ("_class_name", "\"EulerDiscreteScheduler\""),
    ] {
        let dir = temp_config(key, &format!("{{\"shift\": 3.0, \"{key}\": {value}}}"));
        let err = FlowMatchEulerDiscreteScheduler::from_file(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SchedulerError::Unsupported { .. }),
            "{key}: {msg}"
        );
        assert!(msg.contains(key), "{key}: {msg}");
        assert!(msg.contains("scheduler_config.json"), "{key}: {msg}");
        std::fs::remove_dir_all(dir).unwrap();
    }
    let config = FlowMatchEulerDiscreteConfig {
        stochastic_sampling: true,
        ..Default::default()
    };
    let err = FlowMatchEulerDiscreteScheduler::new(config).unwrap_err();
    assert!(err.to_string().contains("stochastic_sampling"), "{err}");
}

#[test]
fn missing_config_names_the_file() {
    let dir = std::env::temp_dir().join(format!("dicache-schedulers-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = FlowMatchEulerDiscreteScheduler::from_file(&dir).unwrap_err();
    assert!(err.to_string().contains("scheduler_config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
