#![allow(clippy::unwrap_used)]

use super::*;
use folder::Folders;

fn row(store: &Store, name: &str, out: &Path) -> RunRow {
    let id = store
        .create_run(&NewRun {
            name: name.into(),
            config: format!("name = {name:?}\nseed = 5\nthreads = 1\nsteps = 10\n"),
            seed: 5,
            steps_planned: 10,
            out_dir: out.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    store.run(id).unwrap()
}

fn fixture() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    (dir, store)
}

#[test]
fn a_folder_of_another_run_is_refused_naming_it_and_a_default_folder_is_suffixed() {
    let (tmp, store) = fixture();
    let out = tmp.path().join("runs/same");
    assert!(Folders::new(&store)
        .unwrap()
        .owner_for_new(&out)
        .unwrap()
        .is_none());
    let first = row(&store, "same", &out);
    let folders = Folders::new(&store).unwrap();
    let owner = folders.owner_for_new(&out).unwrap().unwrap();
    let msg = folder::taken_for_new(&out, &owner).to_string();
    for needle in [
        out.to_str().unwrap(),
        &format!("run {} \"same\"", first.id),
        "--out",
    ] {
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    }
    assert_eq!(
        folders.free_default(&out).unwrap(),
        tmp.path().join("runs/same-2")
    );
}

#[test]
fn a_run_that_failed_before_storing_anything_leaves_its_folder_free() {
    let (tmp, store) = fixture();
    let out = tmp.path().join("out");
    let r = row(&store, "bad-model", &out);
    store.mark_failed(r.id, "no config.json").unwrap();
    std::fs::create_dir_all(&out).unwrap();
    RunMarker::of(&store.run(r.id).unwrap(), &store)
        .write(&out, false)
        .unwrap();
    std::fs::write(out.join("config.toml"), "").unwrap();
    assert!(Folders::new(&store)
        .unwrap()
        .owner_for_new(&out)
        .unwrap()
        .is_none());
}

#[test]
fn a_marker_of_another_history_or_unknown_run_files_keep_a_folder() {
    let (tmp, store) = fixture();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.jsonl"), "").unwrap();
    let owner = Folders::new(&store)
        .unwrap()
        .owner_for_new(&out)
        .unwrap()
        .unwrap();
    assert!(owner.0.contains("metrics.jsonl"), "{}", owner.0);
    let other = Store::open(&tmp.path().join("other.sqlite")).unwrap();
    let r = row(&other, "elsewhere", &out);
    RunMarker::of(&r, &other).write(&out, false).unwrap();
    let owner = Folders::new(&store)
        .unwrap()
        .owner_for_new(&out)
        .unwrap()
        .unwrap();
    assert!(owner.0.contains("other.sqlite"), "{}", owner.0);
    assert!(owner.0.contains("\"elsewhere\""), "{}", owner.0);
}

#[test]
fn resume_refuses_a_folder_whose_marker_names_another_run() {
    let (tmp, store) = fixture();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let a = row(&store, "a", &out);
    let b = row(&store, "b", &tmp.path().join("b"));
    let folders = Folders::new(&store).unwrap();
    // No marker (a folder from before markers): fine.
    folders.check_resume(&a, &out).unwrap();
    RunMarker::of(&a, &store).write(&out, false).unwrap();
    folders.check_resume(&a, &out).unwrap();
    RunMarker::of(&b, &store).write(&out, true).unwrap();
    let msg = folders.check_resume(&a, &out).unwrap_err().to_string();
    assert!(msg.contains(&format!("run {} \"b\"", b.id)), "{msg}");
    assert!(
        msg.contains(&format!("cannot resume run {} \"a\"", a.id)),
        "{msg}"
    );
    // A later run of the history in the same folder (no markers) took it over too.
    std::fs::remove_file(out.join(MARKER_FILE)).unwrap();
    let c = row(&store, "c", &out);
    let msg = Folders::new(&store)
        .unwrap()
        .check_resume(&a, &out)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&format!("run {} \"c\"", c.id)), "{msg}");
}

#[test]
fn resume_takes_more_steps_but_refuses_a_new_seed_model_thread_count_or_folder() {
    let (tmp, store) = fixture();
    let out = tmp.path().join("out");
    let r = row(&store, "r", &out);
    store.mark_failed(r.id, "stopped").unwrap();
    let open = |o: Overrides| Resumable::open(Store::open(store.path()).unwrap(), r.id, &o);
    let res = open(Overrides {
        steps: Some(20),
        seed: Some(5),
        threads: Some(1),
        out: Some(out.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(res.cfg().steps, 20);
    assert_eq!(res.cfg().seed, 5);
    for (o, needles) in [
        (
            Overrides {
                seed: Some(99),
                ..Default::default()
            },
            ["--seed 99", "seed = 5"],
        ),
        (
            Overrides {
                threads: Some(4),
                ..Default::default()
            },
            ["--threads 4", "threads = 1"],
        ),
        (
            Overrides {
                out: Some(tmp.path().join("elsewhere")),
                ..Default::default()
            },
            ["--out", "output.dir"],
        ),
        (
            Overrides {
                model: Some(tmp.path().join("m")),
                ..Default::default()
            },
            ["--model", "model.path"],
        ),
    ] {
        let msg = open(o).err().unwrap().to_string();
        for n in needles {
            assert!(msg.contains(n), "{msg} lacks {n}");
        }
        assert!(msg.contains(&format!("run {} \"r\"", r.id)), "{msg}");
    }
}

fn default_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-policy")
}

/// A small countdown run on the default policy, writing to `out`.
fn small_config(out: &Path, extra: &str) -> RunConfig {
    let text = format!(
        "name = \"small\"\nseed = 5\nthreads = 1\nsteps = 3\n[model]\npath = {:?}\n[output]\n\
         dir = {:?}\n[rollout]\nprompts_per_step = 2\ngroup_size = 2\n[eval]\nevery = 0\n\
         heldout_size = 4\n{extra}",
        default_policy().display().to_string(),
        out.display().to_string(),
    );
    RunConfig::from_toml(&text).unwrap()
}

fn request(cfg: RunConfig) -> NewRunRequest {
    NewRunRequest {
        cfg,
        default_dir: PathBuf::from("unused"),
        tags: Vec::new(),
        notes: String::new(),
    }
}

#[test]
fn a_run_that_cannot_start_leaves_no_record() {
    let (tmp, store) = fixture();
    let host = PluginHost::new();
    // A broken model folder: config.json with an out-of-range size.
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    let text = std::fs::read_to_string(default_policy().join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["num_hidden_layers"] = 1_000_000_000u64.into();
    std::fs::write(model.join("config.json"), v.to_string()).unwrap();
    let mut cfg = small_config(&tmp.path().join("a"), "");
    cfg.model.path = model;
    let store2 = || Store::open(store.path()).unwrap();
    let err = prepare_new(store2(), request(cfg), Extensions::none(), &host)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("num_hidden_layers"), "{err}");
    // More memory than any test machine has: 1024 prompts × 256 completions.
    let cfg = small_config(&tmp.path().join("b"), "");
    let mut cfg = cfg;
    (cfg.rollout.prompts_per_step, cfg.rollout.group_size) = (1024, 256);
    let err = prepare_new(store2(), request(cfg), Extensions::none(), &host)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("rollout.prompts_per_step"), "{err}");
    // A task that cannot give its held-out set (1-digit sums: 100 prompts, ~1/5 held out).
    let mut cfg = small_config(
        &tmp.path().join("c"),
        "[task]\nname = \"arithmetic\"\nmin_digits = 1\nmax_digits = 1\nops = \"+\"\n",
    );
    cfg.eval.heldout_size = 50;
    let err = prepare_new(store2(), request(cfg), Extensions::none(), &host)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("heldout_size"), "{err}");
    let runs = store.list_runs(&Default::default()).unwrap();
    assert!(runs.is_empty(), "no run recorded: {runs:?}");
}

#[test]
fn resume_refuses_a_checkpoint_of_another_run_naming_both() {
    let (tmp, store) = fixture();
    let host = PluginHost::new();
    let out = tmp.path().join("out");
    let p = prepare_new(
        Store::open(store.path()).unwrap(),
        request(small_config(&out, "")),
        Extensions::none(),
        &host,
    )
    .unwrap();
    let (id, cfg) = (p.run_id, p.cfg.clone());
    drop(p);
    store.mark_failed(id, "killed").unwrap();
    let resume = || {
        Resumable::open(
            Store::open(store.path()).unwrap(),
            id,
            &Overrides::default(),
        )
        .unwrap()
        .prepare(Extensions::none(), &host)
    };
    // Its own checkpoint resumes.
    let mut t = rlvr_engine::Trainer::new(cfg.clone()).unwrap();
    t.set_run_id(Some(id));
    t.save_checkpoint(&out).unwrap();
    resume().unwrap();
    store.mark_failed(id, "killed").unwrap();
    // Another run's checkpoint copied in.
    t.set_run_id(Some(id + 41));
    t.save_checkpoint(&out).unwrap();
    let msg = resume().err().unwrap().to_string();
    for want in [
        "resume-0.ckpt".to_string(),
        format!("belongs to run {}", id + 41),
        format!("not to run {id}"),
    ] {
        assert!(msg.contains(&want), "{want}: {msg}");
    }
    // The same run id with another config.
    let mut other = cfg;
    other.seed = 6;
    let mut t = rlvr_engine::Trainer::new(other).unwrap();
    t.set_run_id(Some(id));
    t.save_checkpoint(&out).unwrap();
    let msg = resume().err().unwrap().to_string();
    assert!(msg.contains("another config"), "{msg}");
}
