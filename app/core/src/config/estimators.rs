//! The built-in advantage estimators as the run config sees them: name, summary and parameter
//! specs (`algorithm.advantage`, `algorithm.advantage_params`). The engine implements each one
//! (`rlvr_engine::algo::advantage::build`); a test there checks that every name here builds.

use crate::params::ParamSpec;

/// A built-in estimator: its config name, documentation and parameters.
#[derive(Debug)]
pub struct EstimatorSpec {
    /// Config name.
    pub name: &'static str,
    /// One line: what it does and where it comes from.
    pub summary: &'static str,
    /// Parameters.
    pub params: &'static [ParamSpec],
}

/// Every built-in estimator (plugins may add algorithms).
pub static ESTIMATORS: &[EstimatorSpec] = &[
    EstimatorSpec {
        name: "grpo",
        summary: "group mean baseline, divided by the group std (DeepSeekMath, GRPO)",
        params: &[
            ParamSpec::bool("scale", true, "divide by the group standard deviation"),
            ParamSpec::float("eps", 1e-4, 0.0, 1.0, "added to the std before dividing"),
        ],
    },
    EstimatorSpec {
        name: "dr_grpo",
        summary: "group mean baseline without std division (Understanding R1-Zero-Like Training: Dr. GRPO)",
        params: &[],
    },
    EstimatorSpec {
        name: "rloo",
        summary: "leave-one-out baseline: mean of the other G-1 rewards (Buy 4 REINFORCE Samples, Get a Baseline for Free)",
        params: &[],
    },
    EstimatorSpec {
        name: "reinforce_pp",
        summary: "REINFORCE++: (group-baselined) rewards normalised by the whole batch's std",
        params: &[
            ParamSpec::bool("group_baseline", true, "subtract the group mean first (REINFORCE++-baseline)"),
            ParamSpec::float("eps", 1e-6, 0.0, 1.0, "added to the batch std"),
        ],
    },
    EstimatorSpec {
        name: "passk",
        summary: "closed-form pass@k advantage (Pass@k Training for Adaptively Balancing Exploration and Exploitation)",
        params: &[ParamSpec::int("k", 4.0, 1.0, 256.0, "k of the pass@k objective (at most the group size)")],
    },
    EstimatorSpec {
        name: "qae",
        summary: "K-quantile baseline instead of the mean (Quantile Advantage Estimation for Entropy-Safe Reasoning)",
        params: &[
            ParamSpec::float("quantile", 0.4, 0.0, 1.0, "K: the baseline is the group's K-quantile reward"),
            ParamSpec::bool("scale", true, "divide by the group standard deviation"),
        ],
    },
    EstimatorSpec {
        name: "ppo",
        summary: "PPO: per-token GAE advantages from a learned value head on the policy's (detached) final hidden states (Proximal Policy Optimization Algorithms)",
        params: &[
            ParamSpec::float("gamma", 1.0, 0.0, 1.0, "discount factor"),
            ParamSpec::float("lambda", 0.95, 0.0, 1.0, "GAE lambda"),
            ParamSpec::float("value_lr", 1e-3, 1e-6, 1.0, "learning rate of the value head"),
        ],
    },
    EstimatorSpec {
        name: "w_reinforce",
        summary: "PSR/NSR split: +w_pos for passed, -w_neg for failed samples (The Surprising Effectiveness of Negative Reinforcement in LLM Reasoning)",
        params: &[
            ParamSpec::float("positive_weight", 0.1, 0.0, 10.0, "weight of positive-sample reinforcement (PSR); 0 = NSR only"),
            ParamSpec::float("negative_weight", 1.0, 0.0, 10.0, "weight of negative-sample reinforcement (NSR); 0 = PSR only"),
        ],
    },
];

/// Looks a built-in estimator up by name.
pub fn find(name: &str) -> Option<&'static EstimatorSpec> {
    ESTIMATORS.iter().find(|e| e.name == name)
}
