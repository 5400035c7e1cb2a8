//! The plugin host: finds plugin libraries, checks them (ABI stamp, then abi_stable's layout
//! check), reads their manifests, and adapts their components to the engine's plain traits
//! ([`rlvr_core::extensions`]) — in-process with a deadline on every call, or isolated in a
//! child process (`rlvr-studio plugin-host LIB`) so that a crash or an endless loop kills only
//! the child.
//!
//! Libraries are loaded once per path and never unloaded (abi_stable leaks them by design);
//! [`PluginHost::reload`] loads a fresh copy under a unique name for development.

mod convert;
mod crash;
mod inproc;
mod isolated;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary, RootModule as _};
use rlvr_core::extensions::{ComponentFactory, ComponentInfo, ComponentKind, Extensions, Instance};
use rlvr_core::params::Params;
use rlvr_plugin_api::ffi::{PluginModule_Ref, PluginStamp, STAMP_MAGIC, STAMP_SYMBOL};

pub use crash::{set_crash_log, CRASH_LOG};
pub use isolated::{private_stdout, serve, serve_stdio};
/// The plugin ABI and SDK versions this host loads (re-exported from `rlvr-plugin-api`).
pub use rlvr_plugin_api::{ABI_VERSION, SDK_VERSION};

/// Why a library could not be used. Every message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The file could not be opened as a dynamic library.
    #[error("{path}: cannot be loaded as a dynamic library: {msg}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        msg: String,
    },
    /// The library is not an RLVR Studio plugin.
    #[error(
        "{path}: not an RLVR Studio plugin (no {symbol} symbol: build it with rlvr-plugin-api's \
         export_plugin! macro, see plugin-api/README.md)"
    )]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The missing symbol.
        symbol: String,
    },
    /// Built for another plugin ABI.
    #[error(
        "{path}: incompatible plugin ABI: expected ABI {expected} (SDK {expected_sdk}), found ABI \
         {found} (SDK {found_sdk}); rebuild the plugin against rlvr-plugin-api {expected_sdk}"
    )]
    AbiVersion {
        /// The file.
        path: PathBuf,
        /// The host's ABI version.
        expected: u32,
        /// The host's SDK version.
        expected_sdk: String,
        /// The library's ABI version.
        found: u32,
        /// The library's SDK version.
        found_sdk: String,
    },
    /// The stamp matches but the types do not (abi_stable's layout check).
    #[error("{path}: its plugin types do not match ABI {expected}: {details}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// The host's ABI version.
        expected: u32,
        /// The `Error:` lines of abi_stable's report.
        details: String,
    },
    /// The plugin's own code failed (manifest, constructor).
    #[error("{path}: {msg}")]
    Plugin {
        /// The file.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// Two loaded plugins declare a component of the same kind and name.
    #[error("{path}: component {kind} {name:?} is also declared by {other}")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// Kind.
        kind: ComponentKind,
        /// Name.
        name: String,
        /// The plugin that declared it first.
        other: String,
    },
    /// A name in `[plugins] isolated` is neither a loaded plugin nor a component of one.
    #[error(
        "plugins.isolated = {name:?} is invalid: no loaded plugin is called {name:?} and none \
         declares a component of that name; {}",
        loaded_list(loaded)
    )]
    UnknownIsolated {
        /// The name in the list.
        name: String,
        /// The loaded plugins, as `name (component, …)`.
        loaded: Vec<String>,
    },
    /// File system trouble.
    #[error("{path}: {msg}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What happened.
        msg: String,
    },
}

fn loaded_list(loaded: &[String]) -> String {
    if loaded.is_empty() {
        "no plugin is loaded".into()
    } else {
        format!("loaded plugins: {}", loaded.join(", "))
    }
}

/// A plugin's manifest in host types.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Description.
    pub description: String,
    /// SDK version it was built with.
    pub sdk_version: String,
    /// ABI version it was built for.
    pub abi_version: u32,
    /// Its components (origin filled in by the host).
    pub components: Vec<ComponentInfo>,
}

/// A loaded plugin library.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The library file.
    pub path: PathBuf,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// What it declares.
    pub manifest: Manifest,
    /// Hosted in a child process.
    pub isolated: bool,
    module: PluginModule_Ref,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("manifest", &self.manifest)
            .field("isolated", &self.isolated)
            .finish()
    }
}

/// The dynamic-library file name suffix of this platform.
pub fn library_suffix() -> &'static str {
    if cfg!(target_os = "windows") {
        "dll"
    } else if cfg!(target_os = "macos") {
        "dylib"
    } else {
        "so"
    }
}

/// The user plugin folder: `$RLVR_STUDIO_PLUGINS`, or `plugins` in the platform's data
/// directory (`~/.local/share/rlvr-studio/plugins` on Linux).
pub fn user_plugin_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RLVR_STUDIO_PLUGINS") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "rlvr-studio").map(|d| d.data_dir().join("plugins"))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, PluginError> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).map_err(|e| PluginError::Io {
        path: path.into(),
        msg: e.to_string(),
    })?;
    Ok(sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Libraries loaded in this process, by canonical path: loading the same file twice returns
/// the first load (the dynamic loader would return the old code anyway).
fn loaded() -> &'static Mutex<Vec<(PathBuf, PluginModule_Ref, Manifest)>> {
    static LOADED: OnceLock<Mutex<Vec<(PathBuf, PluginModule_Ref, Manifest)>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(Vec::new()))
}

/// Keeps the `Error:` entries of abi_stable's very long layout report, each with its
/// `Expected:` / `Found:` values on one line: `Error:mismatched type Expected: A Found: B`.
fn layout_summary(e: &LibraryError) -> String {
    summarize_layout_report(&e.to_string())
}

fn summarize_layout_report(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut keep = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("Error:") {
            let detail: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|x| !x.is_empty() && !x.starts_with("Error:"))
                .take(6)
                .copied()
                .collect();
            keep.push(format!("{l} {}", detail.join(" ")).trim().to_string());
        }
    }
    if keep.is_empty() {
        text.lines().take(6).collect::<Vec<_>>().join(" ")
    } else {
        keep.join("; ")
    }
}

/// Opens a library, checks its stamp and layout, and reads its manifest (in this process).
fn load_module(path: &Path) -> Result<(PluginModule_Ref, Manifest), PluginError> {
    let canon = path.canonicalize().map_err(|e| PluginError::Io {
        path: path.into(),
        msg: e.to_string(),
    })?;
    if let Ok(l) = loaded().lock() {
        if let Some((_, m, man)) = l.iter().find(|(p, _, _)| *p == canon) {
            return Ok((*m, man.clone()));
        }
    }
    let raw = RawLibrary::load_at(&canon).map_err(|e| PluginError::Open {
        path: path.into(),
        msg: match &e {
            LibraryError::OpenError { err, .. } => err.to_string(),
            other => other.to_string(),
        },
    })?;
    // The library stays loaded for the life of the process (abi_stable requires 'static).
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));
    // SAFETY: the symbol, when present, is the `PluginStamp` static exported by
    // `export_plugin!`, whose layout is fixed (repr(C), plain bytes).
    let stamp: PluginStamp = unsafe {
        match raw.get::<&'static PluginStamp>(STAMP_SYMBOL) {
            Ok(sym) => **sym,
            Err(_) => {
                return Err(PluginError::NotAPlugin {
                    path: path.into(),
                    symbol: "RLVR_PLUGIN_STAMP".into(),
                })
            }
        }
    };
    if stamp.magic != STAMP_MAGIC {
        return Err(PluginError::NotAPlugin {
            path: path.into(),
            symbol: "RLVR_PLUGIN_STAMP (bad magic)".into(),
        });
    }
    if stamp.abi_version != ABI_VERSION {
        return Err(PluginError::AbiVersion {
            path: path.into(),
            expected: ABI_VERSION,
            expected_sdk: SDK_VERSION.into(),
            found: stamp.abi_version,
            found_sdk: stamp.sdk(),
        });
    }
    // SAFETY: the library is leaked above, so the header's 'static references stay valid.
    let header = unsafe { lib_header_from_raw_library(raw) }.map_err(|e| PluginError::Layout {
        path: path.into(),
        expected: ABI_VERSION,
        details: layout_summary(&e),
    })?;
    let name = header.root_mod_consts().name().as_str().to_string();
    if name != PluginModule_Ref::NAME {
        return Err(PluginError::NotAPlugin {
            path: path.into(),
            symbol: format!("root module {:?} (found {name:?})", PluginModule_Ref::NAME),
        });
    }
    let module =
        header
            .init_root_module::<PluginModule_Ref>()
            .map_err(|e| PluginError::Layout {
                path: path.into(),
                expected: ABI_VERSION,
                details: layout_summary(&e),
            })?;
    let manifest = match (module.manifest())() {
        abi_stable::std_types::RResult::ROk(m) => convert::manifest(&m, path),
        abi_stable::std_types::RResult::RErr(e) => {
            return Err(PluginError::Plugin {
                path: path.into(),
                msg: format!("manifest failed: {e}"),
            })
        }
    };
    if let Ok(mut l) = loaded().lock() {
        l.push((canon, module, manifest.clone()));
    }
    Ok((module, manifest))
}

/// Loads a library and returns what it declares (the `plugins check` command).
pub fn check(path: &Path) -> Result<LoadedPlugin, PluginError> {
    let (module, manifest) = load_module(path)?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        sha256: sha256_file(path)?,
        manifest,
        isolated: false,
        module,
    })
}

/// Dynamic libraries in `dir` (not recursive), sorted.
pub fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == library_suffix()))
        .collect();
    v.sort();
    v
}

/// Every plugin found, the load errors, and how components are hosted.
#[derive(Default)]
pub struct PluginHost {
    /// Loaded plugins.
    pub plugins: Vec<LoadedPlugin>,
    /// Libraries that could not be loaded.
    pub errors: Vec<PluginError>,
    /// Deadline of one call.
    pub deadline: Duration,
    /// The program that hosts an isolated plugin (`rlvr-studio`); its arguments are
    /// `plugin-host LIB`.
    pub child_program: Option<PathBuf>,
    reloads: usize,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.plugins)
            .field("errors", &self.errors)
            .finish()
    }
}

impl PluginHost {
    /// An empty host with a 10 s deadline.
    pub fn new() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            ..Self::default()
        }
    }

    /// Loads every library in `dirs` (missing folders are skipped); failures are kept in
    /// `errors`, never fatal.
    pub fn scan(&mut self, dirs: &[PathBuf]) {
        for d in dirs {
            for lib in libraries_in(d) {
                self.add(&lib);
            }
        }
    }

    /// Loads one library; returns whether it loaded (the error is kept in `errors`).
    pub fn add(&mut self, path: &Path) -> bool {
        match check(path).and_then(|p| self.no_duplicates(p)) {
            Ok(p) => {
                if !self.plugins.iter().any(|q| q.path == p.path) {
                    self.plugins.push(p);
                }
                true
            }
            Err(e) => {
                self.errors.push(e);
                false
            }
        }
    }

    fn no_duplicates(&self, p: LoadedPlugin) -> Result<LoadedPlugin, PluginError> {
        for c in &p.manifest.components {
            for q in self.plugins.iter().filter(|q| q.path != p.path) {
                if q.manifest
                    .components
                    .iter()
                    .any(|d| d.kind == c.kind && d.name == c.name)
                {
                    return Err(PluginError::Duplicate {
                        path: p.path.clone(),
                        kind: c.kind,
                        name: c.name.clone(),
                        other: format!("{} ({})", q.manifest.name, q.path.display()),
                    });
                }
            }
        }
        Ok(p)
    }

    /// Loads a fresh copy of a changed library (a library is never unloaded, and the dynamic
    /// loader returns the old code for the same path): the file is copied under a unique name,
    /// loaded, and the copy deleted. Each reload leaks the old copy's memory (~0.5 MB).
    ///
    /// The new copy replaces the loaded one only after every check passed (it loads, its
    /// components clash with no other plugin); on an error the working copy stays loaded.
    pub fn reload(&mut self, path: &Path) -> Result<(), PluginError> {
        self.reloads += 1;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = std::env::temp_dir().join(format!(
            "{stem}-reload-{}-{}.{}",
            std::process::id(),
            self.reloads,
            library_suffix()
        ));
        std::fs::copy(path, &copy).map_err(|e| PluginError::Io {
            path: path.into(),
            msg: format!("copying for reload: {e}"),
        })?;
        let res = check(&copy);
        let _ = std::fs::remove_file(&copy);
        let mut p = res?;
        p.path = path.to_path_buf();
        p.sha256 = sha256_file(path)?;
        self.replace(p)
    }

    /// Puts `p` in place of the plugin loaded from the same path (keeping its hosting choice),
    /// or adds it; a clash with another plugin's components leaves everything as it was.
    fn replace(&mut self, mut p: LoadedPlugin) -> Result<(), PluginError> {
        let old = self.plugins.iter().position(|q| q.path == p.path);
        if let Some(i) = old {
            p.isolated = self.plugins[i].isolated;
        }
        let p = self.no_duplicates(p)?;
        match old {
            Some(i) => self.plugins[i] = p,
            None => self.plugins.push(p),
        }
        Ok(())
    }

    /// Hosts the named plugins in child processes and the others in-process. A name is a
    /// plugin's name (`Plugin::new`'s first argument) or the name of a component it declares,
    /// which isolates the plugin that declares it. Every known name is applied; the first
    /// name that matches nothing is returned as an error naming the key `plugins.isolated`
    /// and the loaded plugins.
    pub fn set_isolated(&mut self, names: &[String]) -> Result<(), PluginError> {
        let mut unknown = None;
        let mut on = vec![false; self.plugins.len()];
        for name in names {
            let by_plugin: Vec<usize> = (0..self.plugins.len())
                .filter(|&i| self.plugins[i].manifest.name == *name)
                .collect();
            let hits = if by_plugin.is_empty() {
                (0..self.plugins.len())
                    .filter(|&i| {
                        self.plugins[i]
                            .manifest
                            .components
                            .iter()
                            .any(|c| c.name == *name)
                    })
                    .collect()
            } else {
                by_plugin
            };
            if hits.is_empty() && unknown.is_none() {
                unknown = Some(name.clone());
            }
            for i in hits {
                on[i] = true;
            }
        }
        for (p, on) in self.plugins.iter_mut().zip(on) {
            p.isolated = on;
        }
        match unknown {
            None => Ok(()),
            Some(name) => Err(PluginError::UnknownIsolated {
                name,
                loaded: self
                    .plugins
                    .iter()
                    .map(|p| {
                        let comps: Vec<&str> = p
                            .manifest
                            .components
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect();
                        format!("{} ({})", p.manifest.name, comps.join(", "))
                    })
                    .collect(),
            }),
        }
    }

    /// The plugin that declares a component.
    pub fn owner(&self, kind: ComponentKind, name: &str) -> Option<&LoadedPlugin> {
        self.plugins.iter().find(|p| {
            p.manifest
                .components
                .iter()
                .any(|c| c.kind == kind && c.name == name)
        })
    }

    /// The engine-facing factory over the loaded plugins.
    pub fn factory(&self) -> Arc<dyn ComponentFactory> {
        Arc::new(Factory {
            plugins: self.plugins.clone(),
            deadline: self.deadline,
            child_program: self.child_program.clone(),
        })
    }

    /// The extensions a run gets from this host: the loaded plugins' components (none when
    /// no plugin is loaded).
    pub fn extensions(&self) -> Extensions {
        if self.plugins.is_empty() {
            Extensions::none()
        } else {
            Extensions::none().with(self.factory())
        }
    }

    /// Plugins whose components a config uses (for the run history).
    pub fn used_by(&self, cfg: &rlvr_core::RunConfig) -> Vec<&LoadedPlugin> {
        let refs = cfg.plugin_components();
        self.plugins
            .iter()
            .filter(|p| {
                p.manifest.components.iter().any(|c| {
                    refs.iter()
                        .any(|r| r.name == c.name && r.kinds.contains(&c.kind))
                })
            })
            .collect()
    }
}

struct Factory {
    plugins: Vec<LoadedPlugin>,
    deadline: Duration,
    child_program: Option<PathBuf>,
}

impl ComponentFactory for Factory {
    fn components(&self) -> Vec<ComponentInfo> {
        self.plugins
            .iter()
            .flat_map(|p| p.manifest.components.iter().cloned())
            .collect()
    }

    fn instantiate(
        &self,
        kind: ComponentKind,
        name: &str,
        params: &Params,
    ) -> Result<Instance, String> {
        let p = self
            .plugins
            .iter()
            .find(|p| {
                p.manifest
                    .components
                    .iter()
                    .any(|c| c.kind == kind && c.name == name)
            })
            .ok_or_else(|| format!("no loaded plugin declares {kind} {name:?}"))?;
        let json = params.to_json();
        if p.isolated {
            let program = self
                .child_program
                .clone()
                .ok_or("isolated mode needs the rlvr-studio program to host the plugin")?;
            isolated::instantiate(&program, &p.path, kind, name, &json, self.deadline)
        } else {
            let origin = inproc::Origin {
                plugin: &p.manifest.name,
                lib: &p.path,
            };
            inproc::instantiate(p.module, kind, name, &json, self.deadline, &origin)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use rlvr_core::extensions::ScoreItem;
    use rlvr_plugin_api::{Plugin, Sample, Spec, Verdict, Verifier};

    use super::*;

    /// Passes the answer, panics on the `trigger` text, fails anything else.
    struct Picky(String);

    impl Verifier for Picky {
        fn verify(&self, s: &Sample<'_>) -> Result<Verdict, String> {
            if s.completion == self.0 {
                panic!("cannot judge {:?}", s.completion);
            }
            Ok(if s.completion == s.answer {
                Verdict::pass("exact")
            } else {
                Verdict::fail("no")
            })
        }
    }

    fn test_plugin() -> Plugin {
        Plugin::new("tester", "0.0.1", "unit-test plugin").verifier(
            Spec::new("picky", "exact match that panics on a trigger").text(
                "trigger",
                "boom",
                "completion that panics",
            ),
            |p| Ok(Picky(p.text("trigger").to_string())),
        )
    }

    /// The test plugin's root module, built in this process (as `export_plugin!` would).
    fn module() -> PluginModule_Ref {
        static M: OnceLock<PluginModule_Ref> = OnceLock::new();
        *M.get_or_init(|| rlvr_plugin_api::sdk::root_module(test_plugin))
    }

    /// A loaded plugin called `name` at `path` declaring `components` (its module is the
    /// test plugin's; only the manifest matters to the host's bookkeeping).
    fn fake(name: &str, path: &str, components: &[(ComponentKind, &str)]) -> LoadedPlugin {
        LoadedPlugin {
            path: PathBuf::from(path),
            sha256: String::new(),
            manifest: Manifest {
                name: name.into(),
                version: "1.0.0".into(),
                description: String::new(),
                sdk_version: SDK_VERSION.into(),
                abi_version: ABI_VERSION,
                components: components
                    .iter()
                    .map(|&(kind, n)| ComponentInfo {
                        kind,
                        name: n.into(),
                        summary: String::new(),
                        params: Vec::new(),
                        criteria: Vec::new(),
                        origin: format!("plugin {name}"),
                    })
                    .collect(),
            },
            isolated: false,
            module: module(),
        }
    }

    fn host_of(plugins: Vec<LoadedPlugin>) -> PluginHost {
        let mut host = PluginHost::new();
        host.plugins = plugins;
        host
    }

    fn two_plugins() -> PluginHost {
        host_of(vec![
            fake(
                "faulty",
                "/p/libfaulty.so",
                &[
                    (ComponentKind::Verifier, "faulty_verifier"),
                    (ComponentKind::Sampler, "faulty_sampler"),
                ],
            ),
            fake(
                "sql-tools",
                "/p/libsql.so",
                &[(ComponentKind::Verifier, "sql_exec")],
            ),
        ])
    }

    fn isolated(host: &PluginHost) -> Vec<&str> {
        host.plugins
            .iter()
            .filter(|p| p.isolated)
            .map(|p| p.manifest.name.as_str())
            .collect()
    }

    #[test]
    fn isolated_takes_plugin_names_and_component_names() {
        let mut host = two_plugins();
        host.set_isolated(&["sql-tools".into()]).unwrap();
        assert_eq!(isolated(&host), ["sql-tools"]);
        // A component name isolates the plugin that declares it.
        host.set_isolated(&["faulty_verifier".into()]).unwrap();
        assert_eq!(isolated(&host), ["faulty"]);
        host.set_isolated(&["faulty_sampler".into(), "sql_exec".into()])
            .unwrap();
        assert_eq!(isolated(&host), ["faulty", "sql-tools"]);
        // An empty list hosts everything in-process again.
        host.set_isolated(&[]).unwrap();
        assert!(isolated(&host).is_empty());
    }

    #[test]
    fn an_unknown_isolated_name_is_an_error_naming_the_key_and_the_plugins() {
        let mut host = two_plugins();
        let e = host
            .set_isolated(&["faulty".into(), "nonexistent".into()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugins.isolated = \"nonexistent\" is invalid: no loaded plugin is called \
             \"nonexistent\" and none declares a component of that name; loaded plugins: \
             faulty (faulty_verifier, faulty_sampler), sql-tools (sql_exec)"
        );
        // The names that are known still apply.
        assert_eq!(isolated(&host), ["faulty"]);
        let e = host_of(Vec::new())
            .set_isolated(&["faulty".into()])
            .unwrap_err();
        assert!(e.to_string().ends_with("; no plugin is loaded"), "{e}");
    }

    #[test]
    fn a_failed_reload_keeps_the_working_copy() {
        let mut host = two_plugins();
        host.set_isolated(&["sql-tools".into()]).unwrap();
        // The new copy declares a component another plugin has: refused, nothing changes.
        let clash = fake(
            "sql-tools",
            "/p/libsql.so",
            &[(ComponentKind::Verifier, "faulty_verifier")],
        );
        let e = host.replace(clash).unwrap_err();
        assert!(
            matches!(&e, PluginError::Duplicate { name, .. } if name == "faulty_verifier"),
            "{e}"
        );
        assert_eq!(host.plugins.len(), 2);
        let sql = &host.plugins[1];
        assert_eq!(sql.manifest.components[0].name, "sql_exec");
        assert!(sql.isolated);
        // A good copy takes the old one's place and keeps its hosting choice.
        let good = fake(
            "sql-tools",
            "/p/libsql.so",
            &[(ComponentKind::Verifier, "sql_exec_v2")],
        );
        host.replace(good).unwrap();
        assert_eq!(host.plugins.len(), 2);
        assert_eq!(host.plugins[1].manifest.components[0].name, "sql_exec_v2");
        assert!(host.plugins[1].isolated);

        // A file that no longer loads: the error names it, the plugin stays.
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(format!("libbroken.{}", library_suffix()));
        std::fs::write(&lib, b"not a library").unwrap();
        let mut host = host_of(vec![fake(
            "broken",
            &lib.to_string_lossy(),
            &[(ComponentKind::Verifier, "v")],
        )]);
        let e = host.reload(&lib).unwrap_err();
        assert!(matches!(e, PluginError::Open { .. }), "{e}");
        assert_eq!(host.plugins.len(), 1);
        assert_eq!(host.plugins[0].manifest.name, "broken");
    }

    #[test]
    fn extensions_offer_the_loaded_components() {
        assert!(PluginHost::new().extensions().components().is_empty());
        let names: Vec<String> = two_plugins()
            .extensions()
            .components()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["faulty_verifier", "faulty_sampler", "sql_exec"]);
    }

    #[test]
    fn a_panic_in_one_item_errors_only_that_sample() {
        let m = module();
        let manifest = (m.manifest())().into_result().unwrap();
        let mut p = fake("tester", "/p/libtester.so", &[]);
        p.manifest = convert::manifest(&manifest, &p.path);
        let host = host_of(vec![p]);
        let (_, inst) = host
            .extensions()
            .build(
                "rewards.verifier",
                "rewards.verifier_params",
                &[ComponentKind::Verifier],
                "picky",
                &BTreeMap::new(),
            )
            .unwrap();
        let Instance::Reward(r) = inst else {
            panic!("not a reward component");
        };
        let meta = serde_json::Value::Null;
        let items: Vec<ScoreItem<'_>> = ["42", "boom", "7", "42"]
            .iter()
            .map(|c| ScoreItem {
                prompt: "p",
                completion: c,
                answer: "42",
                meta: &meta,
            })
            .collect();
        let out = r.score_batch(&items);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].as_ref().unwrap().passed, Some(true));
        let e = out[1].as_ref().unwrap_err();
        assert!(e.contains("cannot judge \"boom\""), "{e}");
        assert_eq!(out[2].as_ref().unwrap().passed, Some(false));
        assert_eq!(out[3].as_ref().unwrap().score, 1.0);
    }

    #[test]
    fn layout_reports_keep_their_error_lines() {
        let report = "Compared <rlvr_plugin> to <rlvr_plugin>\n\
            some context\n\
            \n\
            Error:mismatched field name\n\
            \x20   Expected:\n\
            \x20       score\n\
            \x20   Found:\n\
            \x20       points\n\
            \n\
            Error:mismatched type size\n\
            \x20   Expected: 8\n\
            \x20   Found: 4\n";
        assert_eq!(
            summarize_layout_report(report),
            "Error:mismatched field name Expected: score Found: points; \
             Error:mismatched type size Expected: 8 Found: 4"
        );
        // Without `Error:` lines: the first six lines.
        let plain = "a\nb\nc\nd\ne\nf\ng\nh";
        assert_eq!(summarize_layout_report(plain), "a b c d e f");
    }
}
