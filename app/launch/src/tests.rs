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
