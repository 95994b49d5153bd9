//! # `acl`: circles and allow/deny policy
pub mod compile;
pub mod edit;
pub mod error;
pub mod model;
pub mod parse;
pub mod policy;
pub use error::{Loc, PolicyError, Problem, ProblemKind};
pub use model::*;
pub use parse::parse;
pub use policy::{Class, Explanation, Policy, RuleRef, Who};
