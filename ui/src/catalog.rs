//! The components a new run can choose from, with their parameter specs. Built-in entries come
//! from the engine (advantage estimators, tasks); plugins add entries at run time with
//! [`ComponentCatalog::add`], and the new-run form shows them without UI code.

use rlvr_core::config::estimators::ESTIMATORS;
use rlvr_core::config::TaskConfig;
use rlvr_core::params::ParamSpec;

/// What a component plugs into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// An advantage estimator (`algorithm.advantage`, parameters in
    /// `algorithm.advantage_params`).
    Estimator,
    /// A task (`task.name`, its knobs in `[task]`).
    Task,
    /// A plugin verifier (`rewards.verifier`, or a `[[rewards.components]]` entry).
    Verifier,
    /// A plugin rubric (a `[[rewards.components]]` entry).
    Rubric,
    /// A plugin sampler (`rollout.sampler`).
    Sampler,
}

impl ComponentKind {
    /// A word for tables.
    pub fn label(self) -> &'static str {
        match self {
            ComponentKind::Estimator => "estimator",
            ComponentKind::Task => "task",
            ComponentKind::Verifier => "verifier",
            ComponentKind::Rubric => "rubric",
            ComponentKind::Sampler => "sampler",
        }
    }
}

/// One choosable component.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// What it plugs into.
    pub kind: ComponentKind,
    /// The name written in the config.
    pub name: String,
    /// One line for the form.
    pub summary: String,
    /// Typed parameters (the form makes a widget for each).
    pub params: Vec<ParamSpec>,
    /// Other settings with their default values (task knobs that are not numbers, e.g. `ops`).
    pub defaults: toml::Table,
    /// Where it comes from ("built-in" or a plugin file).
    pub origin: String,
}

/// Every component the form offers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComponentCatalog {
    /// In display order.
    pub components: Vec<Component>,
}

fn task_defaults(t: TaskConfig) -> toml::Table {
    let mut table = toml::Table::try_from(&t).unwrap_or_default();
    table.remove("name");
    table
}

impl ComponentCatalog {
    /// The engine's built-in estimators and tasks.
    pub fn builtin() -> Self {
        let mut c = Self::default();
        for e in ESTIMATORS {
            c.add(Component {
                kind: ComponentKind::Estimator,
                name: e.name.to_string(),
                summary: e.summary.to_string(),
                params: e.params.to_vec(),
                defaults: toml::Table::new(),
                origin: "built-in".into(),
            });
        }
        for t in rlvr_core::spec::TASKS {
            // The task's defaults, as the engine fills them in for `name = "<task>"`.
            let defaults = toml::from_str::<TaskConfig>(&format!("name = {:?}", t.name))
                .map(task_defaults)
                .unwrap_or_default();
            c.add(Component {
                kind: ComponentKind::Task,
                name: t.name.to_string(),
                summary: t.summary.to_string(),
                params: Vec::new(),
                defaults,
                origin: "built-in".into(),
            });
        }
        c
    }

    /// Adds (or replaces, by kind and name) a component.
    pub fn add(&mut self, comp: Component) {
        if let Some(old) = self
            .components
            .iter_mut()
            .find(|c| c.kind == comp.kind && c.name == comp.name)
        {
            *old = comp;
        } else {
            self.components.push(comp);
        }
    }

    /// Adds a plugin component (a plugin algorithm is offered as an advantage estimator).
    pub fn add_plugin_component(&mut self, c: &rlvr_core::extensions::ComponentInfo) {
        use rlvr_core::extensions::ComponentKind as E;
        let kind = match c.kind {
            E::Verifier => ComponentKind::Verifier,
            E::Rubric => ComponentKind::Rubric,
            E::Sampler => ComponentKind::Sampler,
            E::Algorithm => ComponentKind::Estimator,
        };
        let mut summary = c.summary.clone();
        if !c.criteria.is_empty() {
            let crit: Vec<String> = c
                .criteria
                .iter()
                .map(|k| format!("{} (weight {})", k.name, k.weight))
                .collect();
            summary.push_str(&format!("; criteria: {}", crit.join(", ")));
        }
        self.add(Component {
            kind,
            name: c.name.clone(),
            summary,
            params: c.params.clone(),
            defaults: toml::Table::new(),
            origin: c.origin.clone(),
        });
    }

    /// Components of one kind.
    pub fn of(&self, kind: ComponentKind) -> impl Iterator<Item = &Component> {
        self.components.iter().filter(move |c| c.kind == kind)
    }

    /// One component.
    pub fn find(&self, kind: ComponentKind, name: &str) -> Option<&Component> {
        self.of(kind).find(|c| c.name == name)
    }
}
