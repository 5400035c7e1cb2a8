//! Rules relating several run-config keys that would otherwise be silently ignored: parameters
//! given for a component that is not used, and estimator parameters that the group cannot honour.

use super::RunConfig;
use crate::error::{CoreError, Result};

/// `[model.lora]`: module names known, and no adapter key set while `rank = 0` (it would be
/// ignored).
fn lora_keys(l: &super::LoraSection) -> Result<()> {
    let d = super::LoraSection::default();
    if !l.enabled() {
        let set = [
            ("model.lora.alpha", l.alpha != d.alpha, l.alpha.to_string()),
            (
                "model.lora.dropout",
                l.dropout != d.dropout,
                l.dropout.to_string(),
            ),
            (
                "model.lora.target_modules",
                l.target_modules != d.target_modules,
                format!("{:?}", l.target_modules),
            ),
        ];
        if let Some((key, _, value)) = set.into_iter().find(|s| s.1) {
            return Err(CoreError::config(
                key,
                value,
                "its default while model.lora.rank = 0 (full fine-tuning, no adapters): set the rank to train adapters",
            ));
        }
        return Ok(());
    }
    l.modules().map(drop).map_err(|expected| {
        CoreError::config(
            "model.lora.target_modules",
            format!("{:?}", l.target_modules),
            expected,
        )
    })
}

/// Refuses parameters the run would ignore: `model.system_prompt` or `model.enable_thinking =
/// false` without `model.chat_template`, `rollout.sampler_params` without a
/// `rollout.sampler`, `rewards.verifier_params` with the task's own verifier, and a pass@k `k`
/// above `rollout.group_size`.
pub(crate) fn ignored_params(cfg: &RunConfig) -> Result<()> {
    let m = &cfg.model;
    if !m.chat_template && !m.system_prompt.is_empty() {
        return Err(CoreError::config(
            "model.system_prompt",
            format!("{:?}", m.system_prompt),
            "no system prompt without model.chat_template = true: prompts are given to the model as they are, so it would be ignored",
        ));
    }
    if !m.chat_template && !m.enable_thinking {
        return Err(CoreError::config(
            "model.enable_thinking",
            false,
            "true (the default) without model.chat_template = true: only a chat template can turn thinking off",
        ));
    }
    m.device_choice()?;
    lora_keys(&m.lora)?;
    let r = &cfg.rollout;
    if r.sampler.is_empty() && !r.sampler_params.is_empty() {
        return Err(CoreError::config(
            "rollout.sampler_params",
            keys(r.sampler_params.keys()),
            "no parameters: they are only used with a plugin sampler, and rollout.sampler is not set",
        ));
    }
    let rw = &cfg.rewards;
    if rw.verifier == "task" && !rw.verifier_params.is_empty() {
        return Err(CoreError::config(
            "rewards.verifier_params",
            keys(rw.verifier_params.keys()),
            "no parameters: they are only used with a plugin verifier, and rewards.verifier = \"task\" (the task's own verifier takes none)",
        ));
    }
    if cfg.algorithm.advantage == "passk" {
        // Unknown or mistyped parameters are reported by the estimator check itself.
        if let Ok((_, params)) = cfg.algorithm.estimator() {
            let k = params.u("k");
            if k > r.group_size {
                return Err(CoreError::config(
                    "algorithm.advantage_params.k",
                    k,
                    format!(
                        "at most the group size (rollout.group_size = {}): pass@k needs k completions per prompt",
                        r.group_size
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The parameter names, for the message (at most a few).
fn keys<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    let shown = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        format!("{{ {shown}, … ({} in all) }}", names.len())
    } else {
        format!("{{ {shown} }}")
    }
}

#[cfg(test)]
mod tests {
    use crate::RunConfig;

    fn err(toml: &str) -> String {
        match RunConfig::from_toml(toml) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sampler_params_without_sampler_are_refused() {
        let e = err("[rollout]\nsampler_params = { t0 = 1.0 }\n");
        assert!(
            e.contains("rollout.sampler_params") && e.contains("t0"),
            "{e}"
        );
        assert!(e.contains("rollout.sampler"), "{e}");
    }

    #[test]
    fn verifier_params_with_task_verifier_are_refused() {
        let e = err("[rewards]\nverifier_params = { x = 1 }\n");
        assert!(
            e.contains("rewards.verifier_params") && e.contains('x'),
            "{e}"
        );
    }

    #[test]
    fn passk_k_above_group_size_is_refused() {
        let e = err("[rollout]\ngroup_size = 8\n[algorithm]\nadvantage = \"passk\"\nadvantage_params = { k = 200 }\n");
        assert!(e.contains("algorithm.advantage_params.k"), "{e}");
        assert!(e.contains("200") && e.contains("group_size = 8"), "{e}");
        // The default k (4) above a group of 2.
        let e = err("[rollout]\ngroup_size = 2\n[algorithm]\nadvantage = \"passk\"\n");
        assert!(e.contains("algorithm.advantage_params.k"), "{e}");
    }

    #[test]
    fn used_params_are_accepted() {
        let ok = "[rollout]\ngroup_size = 8\n[algorithm]\nadvantage = \"passk\"\nadvantage_params = { k = 8 }\n";
        assert!(RunConfig::from_toml(ok).is_ok());
        assert!(RunConfig::from_toml("").is_ok());
    }
}
