//! Meta-RL machinery around the estimators: parallel seeded sampling
//! ([`sampler`]), sample processing into returns and advantages ([`processing`]) and the
//! outer optimisers' building blocks ([`optim`]: TRPO, PPO-clip, Adam).
//!
//! Settings follow ProMP's code base, which the paper reuses (notes §5).

pub mod optim;
pub mod processing;
pub mod sampler;

pub use optim::{Adam, TrpoConfig, TrpoOutcome};
pub use processing::{ProcessedSamples, ProcessingConfig};
pub use sampler::{SampleBatch, Sampler, SamplerConfig};
