//! Conversions between the stable-ABI types and the engine's types.

use std::borrow::Cow;
use std::path::Path;

use abi_stable::std_types::{RResult, RString, RVec};
use rlvr_core::extensions::{
    AlgoBatch, AlgoOutput, ComponentInfo, ComponentKind, ComponentScore, CriterionInfo, ScoreItem,
    ScorePart,
};
use rlvr_core::params::{ParamKind, ParamSpec};
use rlvr_plugin_api::ffi;

use crate::Manifest;

pub(crate) fn kind_to_ffi(k: ComponentKind) -> ffi::ComponentKind {
    match k {
        ComponentKind::Verifier => ffi::ComponentKind::Verifier,
        ComponentKind::Rubric => ffi::ComponentKind::Rubric,
        ComponentKind::Sampler => ffi::ComponentKind::Sampler,
        ComponentKind::Algorithm => ffi::ComponentKind::Algorithm,
    }
}

fn kind_from_ffi(k: ffi::ComponentKind) -> ComponentKind {
    match k {
        ffi::ComponentKind::Verifier => ComponentKind::Verifier,
        ffi::ComponentKind::Rubric => ComponentKind::Rubric,
        ffi::ComponentKind::Sampler => ComponentKind::Sampler,
        ffi::ComponentKind::Algorithm => ComponentKind::Algorithm,
    }
}

fn param(p: &ffi::ParamSpec) -> ParamSpec {
    ParamSpec {
        name: Cow::Owned(p.name.to_string()),
        kind: match p.kind {
            ffi::ParamKind::Float => ParamKind::Float,
            ffi::ParamKind::Int => ParamKind::Int,
            ffi::ParamKind::Bool => ParamKind::Bool,
            ffi::ParamKind::Text => ParamKind::Text,
        },
        default: p.default,
        min: p.min,
        max: p.max,
        help: Cow::Owned(p.help.to_string()),
        default_text: Cow::Owned(p.default_text.to_string()),
    }
}

pub(crate) fn manifest(m: &ffi::Manifest, path: &Path) -> Manifest {
    let origin = format!("plugin {} {} ({})", m.name, m.version, path.display());
    Manifest {
        name: m.name.to_string(),
        version: m.version.to_string(),
        description: m.description.to_string(),
        sdk_version: m.sdk_version.to_string(),
        abi_version: m.abi_version,
        components: m
            .components
            .iter()
            .map(|c| ComponentInfo {
                kind: kind_from_ffi(c.kind),
                name: c.name.to_string(),
                summary: c.summary.to_string(),
                params: c.params.iter().map(param).collect(),
                criteria: c
                    .criteria
                    .iter()
                    .map(|k| CriterionInfo {
                        name: k.name.to_string(),
                        weight: k.weight,
                        description: k.description.to_string(),
                    })
                    .collect(),
                origin: origin.clone(),
            })
            .collect(),
    }
}

pub(crate) fn items(items: &[ScoreItem<'_>]) -> RVec<ffi::ScoreItem> {
    items
        .iter()
        .map(|i| ffi::ScoreItem {
            prompt: i.prompt.into(),
            completion: i.completion.into(),
            answer: i.answer.into(),
            meta_json: i.meta.to_string().into(),
        })
        .collect()
}

pub(crate) fn score(s: &ffi::Score) -> ComponentScore {
    ComponentScore {
        score: s.score as f32,
        passed: match s.passed {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        },
        reason: s.reason.to_string(),
        parts: s
            .parts
            .iter()
            .map(|p| ScorePart {
                name: p.name.to_string(),
                score: p.score as f32,
                weight: p.weight as f32,
                reason: p.reason.to_string(),
            })
            .collect(),
    }
}

pub(crate) fn scores(
    r: RResult<RVec<RResult<ffi::Score, RString>>, RString>,
    n: usize,
) -> Vec<Result<ComponentScore, String>> {
    match r {
        RResult::ROk(v) => v
            .iter()
            .map(|x| match x {
                RResult::ROk(s) => Ok(score(s)),
                RResult::RErr(e) => Err(e.to_string()),
            })
            .collect(),
        RResult::RErr(e) => vec![Err(e.to_string()); n],
    }
}

pub(crate) fn batch(b: &AlgoBatch) -> ffi::AlgoBatch {
    ffi::AlgoBatch {
        group_size: b.group_size as u32,
        group_ids: b.group_ids.clone().into(),
        rewards: b.rewards.clone().into(),
        passed: b.passed.iter().map(|&p| u8::from(p)).collect(),
        component_names: b
            .component_names
            .iter()
            .map(|s| RString::from(s.as_str()))
            .collect(),
        component_values: b.component_values.clone().into(),
        token_offsets: b.token_offsets.clone().into(),
        old_logprobs: b.old_logprobs.clone().into(),
        ref_logprobs: b.ref_logprobs.clone().into(),
        entropies: b.entropies.clone().into(),
        mask: b.mask.clone().into(),
    }
}

pub(crate) fn output(o: &ffi::AlgoOutput) -> AlgoOutput {
    AlgoOutput {
        advantages: o.advantages.to_vec(),
        weights: o.weights.to_vec(),
    }
}
