//! The trainer on its own thread: commands and events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rlvr_engine::events::StepMetrics;

use candle_core::Device;
use rlvr_engine::events::EngineEvent;
use rlvr_engine::model::{ModelConfig, Policy};
use rlvr_engine::tasks::ALPHABET;
use rlvr_engine::tokenizer::Tok;
use rlvr_engine::{Command, RunConfig};

/// Writes a one-layer, 32-wide model folder.
fn tiny_model(dir: &std::path::Path) {
    let tok = Tok::char_level(ALPHABET).unwrap();
    let mut cfg = ModelConfig::tiny(tok.vocab_size(), 1, 2, 0);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.num_hidden_layers = 1;
    Policy::init(cfg, tok, 1, &Device::Cpu)
        .unwrap()
        .save(dir)
        .unwrap();
}

fn tiny_run(dir: &std::path::Path) -> RunConfig {
    tiny_model(&dir.join("model"));
    let mut run = RunConfig::from_toml(
        "steps = 1000\n[rollout]\nprompts_per_step = 2\ngroup_size = 2\n[eval]\nevery = 0\nheldout_size = 4\n",
    )
    .unwrap();
    run.model.path = dir.join("model");
    run.output.dir = dir.join("out");
    run
}

fn next_event(rx: &crossbeam_channel::Receiver<EngineEvent>) -> EngineEvent {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("engine went silent")
}

/// The engine's acknowledgement of a `Pause`: the next event must be its Log line.
fn expect_paused_at(rx: &crossbeam_channel::Receiver<EngineEvent>, step: usize) {
    match next_event(rx) {
        EngineEvent::Log { message } => assert_eq!(message, format!("paused at step {step}")),
        other => panic!("expected the pause acknowledgement at step {step}, got {other:?}"),
    }
}

#[test]
fn pause_step_once_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let h = rlvr_engine::spawn(tiny_run(dir.path())).unwrap();
    h.commands.send(Command::Pause).unwrap();
    // Paused before the first step: Started, the step-0 evaluation, then the acknowledgement
    // with no step before it.
    assert!(matches!(next_event(&h.events), EngineEvent::Started(_)));
    assert!(matches!(next_event(&h.events), EngineEvent::Eval(e) if e.step == 0));
    expect_paused_at(&h.events, 0);
    for want in 1..=2 {
        h.commands.send(Command::StepOnce).unwrap();
        loop {
            match next_event(&h.events) {
                EngineEvent::Step(m) => {
                    assert_eq!(m.step, want);
                    break;
                }
                EngineEvent::Samples { groups, .. } => assert_eq!(groups.len(), 2),
                other => panic!("unexpected {other:?}"),
            }
        }
        // Then the resume state of that step, handed to the listener to write.
        match next_event(&h.events) {
            EngineEvent::Checkpoint(p) => assert_eq!(p.0.step(), want),
            other => panic!("expected the step's checkpoint, got {other:?}"),
        }
        // Commands are read in order between steps: a second Pause is acknowledged at this
        // step, with no further step before it (a run that kept stepping would send a step
        // first, or acknowledge a later step).
        h.commands.send(Command::Pause).unwrap();
        expect_paused_at(&h.events, want);
    }
    h.commands.send(Command::Stop).unwrap();
    let mut done = None;
    for ev in h.events.iter() {
        if let EngineEvent::Done(s) = ev {
            done = Some(s);
        }
    }
    let s = done.expect("no Done event");
    assert!(s.stopped);
    assert_eq!(s.steps, 2);
    assert_eq!(
        s.last.unwrap().step,
        2,
        "a stopped run is evaluated where it stopped"
    );
    assert!(dir.path().join("out/policy/model.safetensors").is_file());
    assert_eq!(h.thread.join().unwrap().unwrap().steps, 2);
}

#[test]
fn setup_errors_arrive_as_failed_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny_run(dir.path());
    run.model.path = dir.path().join("missing");
    let h = rlvr_engine::spawn(run).unwrap();
    match next_event(&h.events) {
        EngineEvent::Failed { error } => assert!(error.contains("missing"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(h.thread.join().unwrap().is_err());
}

/// The default policy on countdown: partly competent, so groups carry signal.
fn default_policy_run(extra: &str) -> RunConfig {
    let base = format!(
        "steps = 5\n[task]\nname = \"countdown\"\n[rollout]\nprompts_per_step = 8\ngroup_size = 8\n[eval]\nheldout_size = 8\n{extra}"
    );
    let mut run = RunConfig::from_toml(&base).unwrap();
    run.model.path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-policy");
    run
}

#[test]
fn dynamic_sampling_fills_the_batch_with_informative_groups() {
    let mut t = rlvr_engine::Trainer::new(default_policy_run(
        "[algorithm]\nzero_variance = \"resample\"\nresample_rounds = 16\n",
    ))
    .unwrap();
    for _ in 0..2 {
        let (m, groups) = t.train_step().unwrap();
        assert_eq!(groups.len(), 8);
        for g in &groups {
            let r0 = g.samples[0].reward;
            assert!(
                g.samples.iter().any(|s| s.reward != r0),
                "zero-variance group kept: {g:?}"
            );
        }
        assert!(m.nonzero_adv_frac > 0.0);
    }
}

#[test]
fn injected_noise_flips_observed_rewards() {
    let mut t = rlvr_engine::Trainer::new(default_policy_run(
        "[rewards]\nflip_false_negative = 0.5\nflip_false_positive = 0.0\n",
    ))
    .unwrap();
    let (mut true_acc, mut observed) = (0.0, 0.0);
    let mut flipped = 0;
    for _ in 0..3 {
        let (m, groups) = t.train_step().unwrap();
        true_acc += m.accuracy;
        observed += m.observed_accuracy;
        flipped += groups
            .iter()
            .flat_map(|g| &g.samples)
            .filter(|s| s.components[0].2.contains("flipped"))
            .count();
    }
    assert!(
        true_acc > 0.3,
        "the default policy solves some countdown problems"
    );
    assert!(
        observed < true_acc * 0.8,
        "half the passes are hidden: {observed} vs {true_acc}"
    );
    assert!(flipped > 0);
}

#[test]
fn token_selection_and_overlong_mask_limit_the_gradient() {
    // The 80/20 rule: only the top fifth of tokens by entropy carry a gradient.
    let mut t = rlvr_engine::Trainer::new(default_policy_run(
        "[algorithm]\ntop_entropy_fraction = 0.2\n",
    ))
    .unwrap();
    let (m, _) = t.train_step().unwrap();
    assert!(m.nonzero_adv_frac <= 0.3, "{}", m.nonzero_adv_frac);
    // Countdown answers are longer than 3 tokens: every completion is truncated and masked.
    let mut run = default_policy_run("[algorithm]\noverlong = \"mask\"\n");
    run.rollout.max_new_tokens = 3;
    let mut t = rlvr_engine::Trainer::new(run).unwrap();
    let (m, _) = t.train_step().unwrap();
    assert_eq!(m.truncated_frac, 1.0);
    assert_eq!(m.nonzero_adv_frac, 0.0);
    assert_eq!(m.grad_norm, 0.0);
}

type Groups = [rlvr_engine::events::SampleGroup];

/// Advantages of a group's samples sum to zero (leave-one-out baseline).
fn rloo_centres_each_group(_: &StepMetrics, groups: &Groups) {
    for g in groups {
        let sum: f32 = g.samples.iter().map(|s| s.advantage).sum();
        assert!(sum.abs() < 1e-4, "RLOO advantages sum to {sum}: {g:?}");
    }
}

/// Pass@k (k = 2): a group with fewer than k failures has pass@k = 1, so no signal; otherwise
/// passes are reinforced and failures penalised.
fn passk_zeroes_groups_that_pass_at_k(_: &StepMetrics, groups: &Groups) {
    for g in groups {
        let fails = g.samples.iter().filter(|s| !s.passed).count();
        for s in &g.samples {
            if fails < 2 {
                assert_eq!(s.advantage, 0.0, "{g:?}");
            } else {
                assert!(if s.passed {
                    s.advantage >= 0.0
                } else {
                    s.advantage <= 0.0
                });
            }
        }
    }
}

/// With ε = 3e-4 the second inner update's ratios leave the clip range.
fn tiny_epsilon_clips(m: &StepMetrics, _: &Groups) {
    assert!(m.clip_low_frac + m.clip_high_frac > 0.0, "{m:?}");
}

/// The KL is reported by every estimator, the loss's (k2) as `kl`; the reference is reset to
/// the policy every step, so the policy never moved away from it when the step's loss is taken.
fn k2_kl_with_a_reset_reference(m: &StepMetrics, _: &Groups) {
    let by_kind: Vec<&str> = m.kl_by_kind.keys().map(String::as_str).collect();
    assert_eq!(by_kind, ["k1", "k2", "k3"]);
    assert_eq!(m.kl, m.kl_by_kind.get("k2").copied());
    let kl = m.kl.unwrap();
    assert!(
        kl.abs() < 1e-12,
        "reference not reset: KL {kl} at step {}",
        m.step
    );
}

fn dense_terms_train_every_row(m: &StepMetrics, _: &Groups) {
    assert!(m.loss != 0.0 && m.loss.is_finite(), "{m:?}");
}

fn soft_overlong_is_a_reward_component(m: &StepMetrics, groups: &Groups) {
    assert!(m.reward_components.contains_key("overlong"), "{m:?}");
    for s in groups.iter().flat_map(|g| &g.samples) {
        assert!(s.components.iter().any(|c| c.0 == "overlong"), "{s:?}");
    }
}

/// The forward correction turns the observed pass/fail into non-binary rewards (without it,
/// noisy rewards are 0 or 1).
fn forward_correction_rescales_rewards(_: &StepMetrics, groups: &Groups) {
    let rewards: Vec<f32> = groups
        .iter()
        .flat_map(|g| &g.samples)
        .map(|s| s.reward)
        .collect();
    assert!(
        rewards.iter().any(|&r| r != 0.0 && r != 1.0),
        "uncorrected rewards: {rewards:?}"
    );
}

fn ppo_reports_the_value_loss(m: &StepMetrics, _: &Groups) {
    assert!(m.value_loss.is_some_and(f64::is_finite), "{m:?}");
}

fn rehearsal_divergence_is_reported(m: &StepMetrics, _: &Groups) {
    assert!(m.divergence.is_some_and(f64::is_finite), "{m:?}");
}

#[test]
fn every_algorithm_option_trains_one_step() {
    type Check = fn(&StepMetrics, &Groups);
    let cases: [(&str, Check); 10] = [
        (
            "[algorithm]\nadvantage = \"rloo\"\naggregation = \"bnpo\"\n",
            rloo_centres_each_group,
        ),
        (
            "[algorithm]\nadvantage = \"passk\"\nadvantage_params = { k = 2 }\ndual_clip = 3.0\n",
            passk_zeroes_groups_that_pass_at_k,
        ),
        (
            "[algorithm]\nratio = \"sequence\"\ninner_updates = 2\nepsilon_low = 0.0003\nepsilon_high = 0.0004\n",
            tiny_epsilon_clips,
        ),
        (
            "[algorithm]\nkl = \"k2\"\nkl_coef = 0.1\nreference_reset_every = 1\n",
            k2_kl_with_a_reset_reference,
        ),
        (
            "[algorithm]\nentropy_coef = 0.01\nlp_reg_coef = 1.0\n",
            dense_terms_train_every_row,
        ),
        (
            "[algorithm]\noverlong = \"soft\"\naggregation = \"dr_grpo\"\n",
            soft_overlong_is_a_reward_component,
        ),
        (
            "[rewards]\nflip_false_negative = 0.2\nflip_false_positive = 0.1\ncorrection = \"forward\"\n",
            forward_correction_rescales_rewards,
        ),
        (
            "[algorithm]\nadvantage = \"ppo\"\ninner_updates = 2\n",
            ppo_reports_the_value_loss,
        ),
        (
            "[algorithm]\ndivergence = \"js\"\nrehearsal_size = 16\nrehearsal_batch = 8\n",
            rehearsal_divergence_is_reported,
        ),
        (
            "[algorithm]\ndivergence = \"forward_kl\"\nrehearsal_size = 16\nrehearsal_batch = 8\n",
            rehearsal_divergence_is_reported,
        ),
    ];
    for (extra, check) in cases {
        let mut t = rlvr_engine::Trainer::new(default_policy_run(extra)).unwrap();
        for _ in 0..2 {
            let (m, groups) = t.train_step().unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert!(m.loss.is_finite() && m.grad_norm.is_finite(), "{extra}");
            check(&m, &groups);
        }
    }
}

fn untimed(mut m: rlvr_engine::events::StepMetrics) -> rlvr_engine::events::StepMetrics {
    m.elapsed_s = 0.0;
    m.step_time_s = 0.0;
    m.rollout_s = 0.0;
    m.update_s = 0.0;
    m.tokens_per_s = 0.0;
    m.train_tokens_per_s = 0.0;
    m
}

#[test]
fn resuming_a_checkpoint_reproduces_the_uninterrupted_run() {
    for extra in [
        "[algorithm]\nepsilon_high = 0.28\ninner_updates = 2\n",
        "[algorithm]\nadvantage = \"ppo\"\nkl_coef = 0.05\n[rewards]\nflip_false_negative = 0.2\n",
        "[algorithm]\ndivergence = \"js\"\nrehearsal_size = 16\nrehearsal_batch = 8\nzero_variance = \"resample\"\n",
        // LoRA with dropout, a KL reference reset every 2 steps (the reference's adapters are
        // in the checkpoint), micro-batches and gradient checkpointing.
        "[model]\ngradient_checkpointing = true\n[model.lora]\nrank = 4\ndropout = 0.1\n[optim]\nlr = 0.01\nmicro_batch = 8\n[algorithm]\nkl_coef = 0.05\nreference_reset_every = 2\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |sub: &str| {
            let mut c = default_policy_run(extra);
            c.output.dir = dir.path().join(sub);
            c
        };
        let mut whole = rlvr_engine::Trainer::new(cfg("a")).unwrap();
        let expected: Vec<_> = (0..6).map(|_| untimed(whole.train_step().unwrap().0)).collect();

        let mut first = rlvr_engine::Trainer::new(cfg("b")).unwrap();
        for _ in 0..3 {
            first.train_step().unwrap();
        }
        let ck = first.save_checkpoint(&dir.path().join("b")).unwrap();
        drop(first);
        let mut resumed = rlvr_engine::Trainer::new(cfg("b")).unwrap();
        resumed.load_checkpoint(&ck).unwrap();
        assert_eq!(resumed.step(), 3);
        let got: Vec<_> = (0..3).map(|_| untimed(resumed.train_step().unwrap().0)).collect();
        assert_eq!(got, expected[3..], "{extra}");
    }
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = default_policy_run("");
    run.output.dir = dir.path().to_path_buf();
    let mut t = rlvr_engine::Trainer::new(run.clone()).unwrap();
    let first = t.save_checkpoint(dir.path()).unwrap();
    t.train_step().unwrap();
    let ck = t.save_checkpoint(dir.path()).unwrap();
    assert_ne!(first, ck, "consecutive steps use different slots");
    assert_eq!(rlvr_engine::trainer::checkpoint_step(&ck).unwrap(), 1);
    let latest = || rlvr_engine::trainer::latest_checkpoint(dir.path()).unwrap();
    assert_eq!(latest(), Some((ck.clone(), 1)));
    let good = std::fs::read(&ck).unwrap();
    // A write cut short: the other slot (step 0) is used.
    std::fs::write(&ck, &good[..good.len() / 3]).unwrap();
    assert_eq!(latest(), Some((first.clone(), 0)));
    // One flipped byte in the data fails the checksum too.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    std::fs::write(&ck, &flipped).unwrap();
    assert_eq!(latest(), Some((first.clone(), 0)));
    std::fs::write(&first, b"junk").unwrap();
    let e = rlvr_engine::trainer::latest_checkpoint(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no usable checkpoint") && e.contains("resume-0.ckpt"),
        "{e}"
    );
    let load = |bytes: &[u8]| {
        std::fs::write(&ck, bytes).unwrap();
        rlvr_engine::Trainer::new(run.clone())
            .unwrap()
            .load_checkpoint(&ck)
            .unwrap_err()
            .to_string()
    };
    for bad in [
        &b"junk"[..],
        &good[..good.len() / 2],
        &good[..40],
        &flipped[..],
    ] {
        let e = load(bad);
        assert!(e.contains("resume-1.ckpt"), "{e}");
    }
    // A checkpoint of another model.
    let mut other = default_policy_run("");
    let small = dir.path().join("small");
    tiny_model(&small);
    other.model.path = small;
    other.output.dir = dir.path().join("o");
    let mut o = rlvr_engine::Trainer::new(other).unwrap();
    o.train_step().unwrap();
    assert_eq!(o.save_checkpoint(dir.path()).unwrap(), ck);
    let e = rlvr_engine::Trainer::new(run)
        .unwrap()
        .load_checkpoint(&ck)
        .unwrap_err()
        .to_string();
    // Refused by its config stamp (another model path) before its shapes are compared.
    assert!(
        e.contains("resume-1.ckpt") && e.contains("another config"),
        "{e}"
    );
}

mod extensions {
    //! The extension points driven by plain Rust components (what the plugin host adapts
    //! plugin libraries to).
    use std::sync::{Arc, Mutex};

    use rlvr_engine::algo::params::{ParamSpec, Params};
    use rlvr_engine::events::EngineEvent;
    use rlvr_engine::extensions::*;

    use super::default_policy_run;

    /// Records the batch it sees; gives +1 to every token of passed rows and -1 otherwise.
    struct Recording(Arc<Mutex<Option<AlgoBatch>>>);
    impl TokenAlgorithm for Recording {
        fn compute(&self, b: &AlgoBatch) -> Result<AlgoOutput, String> {
            *self.0.lock().unwrap() = Some(b.clone());
            let mut adv = Vec::new();
            for (r, w) in b.token_offsets.windows(2).enumerate() {
                let a = if b.passed[r] { 1.0 } else { -1.0 };
                adv.extend(std::iter::repeat_n(a, (w[1] - w[0]) as usize));
            }
            Ok(AlgoOutput {
                advantages: adv,
                weights: Vec::new(),
            })
        }
    }

    /// Length of the completion as a reward component; errors on empty completions.
    struct Length;
    impl RewardComponent for Length {
        fn score_batch(&self, items: &[ScoreItem<'_>]) -> Vec<Result<ComponentScore, String>> {
            items
                .iter()
                .map(|i| match i.completion.trim().len() {
                    0 => Err("empty".to_string()),
                    n => Ok(ComponentScore {
                        score: n as f32,
                        passed: None,
                        reason: format!("{n} chars"),
                        parts: vec![],
                    }),
                })
                .collect()
        }
    }

    /// Produces NaN logits on every other call (the engine must restore the row).
    struct NanEveryOther(std::sync::atomic::AtomicUsize);
    impl TokenSampler for NanEveryOther {
        fn transform(&self, logits: &mut [f32], _p: usize, _g: &[u32]) -> Result<(), String> {
            if self
                .0
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(2)
            {
                logits.fill(f32::NAN);
            }
            Ok(())
        }
    }

    /// A verifier that fails every item.
    struct AlwaysFails;
    impl RewardComponent for AlwaysFails {
        fn score_batch(&self, items: &[ScoreItem<'_>]) -> Vec<Result<ComponentScore, String>> {
            vec![Err("broken".to_string()); items.len()]
        }
    }

    struct Factory(Arc<Mutex<Option<AlgoBatch>>>);
    impl ComponentFactory for Factory {
        fn components(&self) -> Vec<ComponentInfo> {
            let info = |kind, name: &str, params| ComponentInfo {
                kind,
                name: name.into(),
                summary: String::new(),
                params,
                criteria: vec![],
                origin: "test".into(),
            };
            vec![
                info(ComponentKind::Algorithm, "recording", vec![]),
                info(
                    ComponentKind::Rubric,
                    "length",
                    vec![ParamSpec::float("scale", 1.0, 0.0, 2.0, "scale")],
                ),
                info(ComponentKind::Sampler, "nan_sampler", vec![]),
                info(ComponentKind::Verifier, "always_fails", vec![]),
            ]
        }
        fn instantiate(
            &self,
            kind: ComponentKind,
            name: &str,
            _p: &Params,
        ) -> Result<Instance, String> {
            Ok(match kind {
                ComponentKind::Verifier if name == "always_fails" => {
                    Instance::Reward(Arc::new(AlwaysFails))
                }
                ComponentKind::Algorithm => {
                    Instance::Algorithm(Arc::new(Recording(self.0.clone())))
                }
                ComponentKind::Sampler => {
                    Instance::Sampler(Arc::new(NanEveryOther(Default::default())))
                }
                _ => Instance::Reward(Arc::new(Length)),
            })
        }
    }

    #[test]
    fn components_shape_rewards_advantages_and_sampling() {
        let seen = Arc::new(Mutex::new(None));
        let ext = Extensions::none().with(Arc::new(Factory(seen.clone())));
        let mut cfg = default_policy_run(
            "[algorithm]\nadvantage = \"recording\"\nkl_coef = 0.05\n\
             [[rewards.components]]\nname = \"length\"\nweight = 0.5\nparams = { scale = 1.5 }\n",
        );
        cfg.rollout.sampler = "nan_sampler".into();
        // Without the extensions the names are clear errors.
        let e = rlvr_engine::Trainer::new(cfg.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("rollout.sampler = \"nan_sampler\""), "{e}");
        let mut t = rlvr_engine::Trainer::with_extensions(cfg, &ext).unwrap();
        let (m, groups) = t.train_step().unwrap();
        let b = seen.lock().unwrap().take().unwrap();
        // Reference log-probs come with the batch (KL on), one per token, and at step 1 the
        // reference is the policy that sampled them.
        assert_eq!(b.ref_logprobs.len(), b.old_logprobs.len());
        let worst = b
            .ref_logprobs
            .iter()
            .zip(&b.old_logprobs)
            .map(|(a, c)| (a - c).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-3,
            "reference vs sampling log-probs differ by {worst}"
        );
        assert!(
            b.component_names.contains(&"length".to_string()),
            "{:?}",
            b.component_names
        );
        // Token advantages are the algorithm's (+1 passed, -1 failed).
        for g in &groups {
            for s in &g.samples {
                let want = if s.passed { 1.0 } else { -1.0 };
                assert!(s.tokens.advantage.iter().all(|&a| a == want), "{s:?}");
                let len = s.completion.trim().len() as f32;
                let comp = s.components.iter().find(|c| c.0 == "length").unwrap();
                if len > 0.0 {
                    assert_eq!(comp.1, len);
                } else {
                    assert!(comp.2.starts_with("error: empty"), "{comp:?}");
                }
            }
        }
        assert!(m.reward_components.contains_key("length"));
    }

    /// Runs `cfg` with the test components to its end, returning every event.
    fn run_events(mut cfg: rlvr_engine::RunConfig) -> Vec<EngineEvent> {
        let dir = tempfile::tempdir().unwrap();
        cfg.output.dir = dir.path().join("out");
        let ext = Extensions::none().with(Arc::new(Factory(Default::default())));
        let mut t = rlvr_engine::Trainer::with_extensions(cfg, &ext).unwrap();
        let mut events = Vec::new();
        t.run(&mut |e| events.push(e), None).unwrap();
        events
    }

    #[test]
    fn a_failing_sampler_is_caught_counted_and_its_rows_sample_normally() {
        let mut cfg = default_policy_run("");
        cfg.steps = 1;
        cfg.rollout.sampler = "nan_sampler".into();
        let events = run_events(cfg);
        let step = events
            .iter()
            .find_map(|e| match e {
                EngineEvent::Step(m) => Some(m),
                _ => None,
            })
            .unwrap();
        // Every other logits row came back NaN: counted against the step, and logged.
        let errors = step.plugin_errors.get("nan_sampler").copied().unwrap_or(0);
        let tokens: usize = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Samples { groups, .. } => Some(groups),
                _ => None,
            })
            .flatten()
            .flat_map(|g| &g.samples)
            .map(|s| s.length)
            .sum();
        assert!(
            errors * 2 >= tokens && errors * 2 <= tokens + 2,
            "{errors} sampler errors for {tokens} sampled tokens"
        );
        assert!(events.iter().any(|e| matches!(e, EngineEvent::Log { message }
            if message.starts_with("plugin component nan_sampler:") && message.contains("in step 1"))));
        // The failed rows were restored before sampling: every token is a character of the
        // answer or the end of sequence, never a special id (an unrestored NaN row samples
        // id 0, the padding, which decodes to nothing).
        for e in &events {
            if let EngineEvent::Samples { groups, .. } = e {
                for s in groups.iter().flat_map(|g| &g.samples) {
                    let eos = usize::from(!s.truncated);
                    assert_eq!(
                        s.completion.chars().count() + eos,
                        s.length,
                        "special tokens sampled: {s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn evaluation_errors_count_under_the_evaluation_not_the_next_step() {
        let mut cfg = default_policy_run("");
        cfg.steps = 1;
        cfg.rewards.verifier = "always_fails".into();
        let events = run_events(cfg);
        let evals: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Eval(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(evals.len(), 2, "at step 0 and at the end");
        for e in &evals {
            // Greedy and sampled completions of every held-out problem.
            let scored = e.problems * (1 + e.samples);
            assert_eq!(e.plugin_errors.get("always_fails"), Some(&scored), "{e:?}");
            assert!(events
                .iter()
                .any(|ev| matches!(ev, EngineEvent::Log { message }
                if message.starts_with("plugin component always_fails:")
                    && message.contains(&format!("in the evaluation at step {}", e.step)))));
        }
        let step = events
            .iter()
            .find_map(|e| match e {
                EngineEvent::Step(m) => Some(m),
                _ => None,
            })
            .unwrap();
        // Only the step's own completions (8 prompts × 8), not the step-0 evaluation's.
        assert_eq!(
            step.plugin_errors.get("always_fails"),
            Some(&64),
            "{step:?}"
        );
    }
}

/// A dataset run on the tiny model (context 64): 49 short problems, then `last` (line 50).
fn dataset_run(dir: &std::path::Path, last: &str) -> RunConfig {
    let mut text: String = (0..7)
        .flat_map(|a| {
            (0..7)
                .map(move |b| format!("{{\"prompt\": \"{a}+{b}=\", \"answer\": \"{}\"}}\n", a + b))
        })
        .collect();
    text.push_str(last);
    text.push('\n');
    let data = dir.join("data.jsonl");
    std::fs::write(&data, text).unwrap();
    let mut run = tiny_run(dir);
    run.task = toml::from_str(&format!(
        "name = \"dataset\"\npath = {:?}\n",
        data.display().to_string()
    ))
    .unwrap();
    run.eval.heldout_size = 1;
    run
}

#[test]
fn dataset_problems_too_long_for_the_model_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let long_prompt = format!(
        "{{\"prompt\": \"{}=\", \"answer\": \"1\"}}",
        "1+".repeat(50)
    );
    let err = rlvr_engine::Trainer::new(dataset_run(dir.path(), &long_prompt))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("data.jsonl:50")
            && err.contains("prompt")
            && err.contains("max_position_embeddings = 64")
            && !err.contains("rollout.max_new_tokens"),
        "{err}"
    );
    let long_answer = format!(
        "{{\"prompt\": \"9+9=\", \"answer\": \"{}\"}}",
        "1".repeat(70)
    );
    let err = rlvr_engine::Trainer::new(dataset_run(dir.path(), &long_answer))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("data.jsonl:50")
            && err.contains("answer (70 characters)")
            && err.contains("max_position_embeddings = 64"),
        "{err}"
    );
}

/// `[model] chat_template = true`: every prompt of the run goes through the folder's template
/// (here a tiny one in the character vocabulary, with a system prompt), and a folder without a
/// template is refused naming the key and the folder.
#[test]
fn chat_template_runs_wrap_every_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny_run(dir.path());
    run.steps = 2;
    run.model.chat_template = true;
    let e = rlvr_engine::Trainer::new(run.clone())
        .err()
        .expect("a folder without a template is refused")
        .to_string();
    assert!(
        e.starts_with("model.chat_template = true is invalid")
            && e.contains(&run.model.path.display().to_string())
            && e.contains("no chat template"),
        "{e}"
    );
    std::fs::write(
        run.model.path.join("chat_template.jinja"),
        "{{ bos_token }}{% for m in messages %}{{ m.role[0] }}:{{ m.content }}>{% endfor %}{% if add_generation_prompt %}a:{% endif %}",
    )
    .unwrap();
    run.model.system_prompt = "be brief".into();
    let mut t = rlvr_engine::Trainer::new(run).unwrap();
    let tok = &t.policy().tok;
    let text = tok.prompt_text("1+2=").unwrap();
    assert_eq!(text, "<bos>s:be brief>u:1+2=>a:");
    // Encoded as apply_chat_template encodes: the template's own <bos>, nothing added.
    let ids = tok.encode_prompt("1+2=").unwrap();
    assert_eq!(ids, tok.encode(&text).unwrap());
    assert_eq!(ids.iter().filter(|&&i| Some(i) == tok.bos).count(), 1);
    let (m, groups) = t.train_step().unwrap();
    assert_eq!((m.step, groups.len()), (1, 2));
}

/// A LoRA run trains only the adapters: the base weights stay bit-identical, the adapters
/// move, the KL reference is the base, and the run's policy is a PEFT adapter folder over the
/// run's model folder. A CUDA device on a build without CUDA is refused naming the key.
#[test]
fn lora_runs_train_only_the_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = default_policy_run(
        "[model.lora]\nrank = 4\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]\n[optim]\nlr = 0.01\n[algorithm]\nkl_coef = 0.1\n",
    );
    cfg.output.dir = dir.path().join("out");
    let base = Policy::load(&cfg.model.path, &Device::Cpu).unwrap();
    let mut t = rlvr_engine::Trainer::new(cfg.clone()).unwrap();
    assert_eq!(
        t.policy().num_trainable(),
        4 * 4 * ((128 + 128) + (128 + 64) + (352 + 128))
    );
    let adapters_before: Vec<Vec<f32>> = t
        .policy()
        .trainable()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let mut kl = Vec::new();
    for _ in 0..3 {
        kl.push(t.train_step().unwrap().0.kl.unwrap());
    }
    assert_eq!(kl[0], 0.0, "the first step's policy is the base: {kl:?}");
    assert!(kl[2] > 0.0, "the adapters moved away from the base: {kl:?}");
    for ((n, a), (m, b)) in base.params().iter().zip(t.policy().params()) {
        assert_eq!(n, m);
        let (a, b): (Vec<f32>, Vec<f32>) = (
            a.flatten_all().unwrap().to_vec1().unwrap(),
            b.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, b, "{n} of the frozen base changed");
    }
    let moved = t
        .policy()
        .trainable()
        .iter()
        .zip(&adapters_before)
        .filter(|((_, v), before)| &v.flatten_all().unwrap().to_vec1::<f32>().unwrap() != *before)
        .count();
    assert!(
        moved > t.policy().trainable().len() / 2,
        "{moved} adapters moved"
    );
    let out = dir.path().join("policy");
    t.policy().save(&out).unwrap();
    assert!(out.join("adapter_config.json").is_file() && !out.join("model.safetensors").exists());
    let back = Policy::load(&out, &Device::Cpu).unwrap();
    assert_eq!(back.num_trainable(), t.policy().num_trainable());

    cfg.model.device = "cuda:0".into();
    if !candle_core::utils::cuda_is_available() {
        let e = rlvr_engine::trainer::preflight(&cfg, &rlvr_engine::extensions::Extensions::none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.device") && e.contains("no CUDA"), "{e}");
    }
}
