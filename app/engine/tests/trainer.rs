//! The trainer on its own thread: commands and events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use candle_core::Device;
use rlvr_engine::events::EngineEvent;
use rlvr_engine::model::{ModelConfig, Policy};
use rlvr_engine::tasks::ALPHABET;
use rlvr_engine::tokenizer::Tok;
use rlvr_engine::{Command, RunConfig};

fn tiny_run(dir: &std::path::Path) -> RunConfig {
    let tok = Tok::char_level(ALPHABET).unwrap();
    let mut cfg = ModelConfig::tiny(tok.vocab_size(), 1, 2, 0);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.num_hidden_layers = 1;
    Policy::init(cfg, tok, 1, &Device::Cpu)
        .unwrap()
        .save(&dir.join("model"))
        .unwrap();
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

#[test]
fn pause_step_once_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let h = rlvr_engine::spawn(tiny_run(dir.path())).unwrap();
    h.commands.send(Command::Pause).unwrap();
    let mut steps = Vec::new();
    // Paused before the first step: nothing but Started + the step-0 evaluation arrives.
    assert!(matches!(next_event(&h.events), EngineEvent::Started(_)));
    assert!(matches!(next_event(&h.events), EngineEvent::Eval(e) if e.step == 0));
    assert!(
        h.events.recv_timeout(Duration::from_millis(300)).is_err(),
        "paused run stepped"
    );
    for want in 1..=2 {
        h.commands.send(Command::StepOnce).unwrap();
        loop {
            match next_event(&h.events) {
                EngineEvent::Step(m) => {
                    steps.push(m.step);
                    assert_eq!(m.step, want);
                    break;
                }
                EngineEvent::Samples { groups, .. } => assert_eq!(groups.len(), 2),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            h.events.recv_timeout(Duration::from_millis(200)).is_err(),
            "stepped twice"
        );
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
