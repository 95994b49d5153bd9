//! Errors with a location: every problem in a policy file names the file, the line and the
//! column, says what is wrong and, where there is one, the fix.

use std::fmt;

/// Where in the policy file something is (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

impl Loc {
    /// The location of byte `offset` in `text`.
    pub fn of(text: &str, offset: usize) -> Loc {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() as u32 + 1;
        let col = before
            .rfind('\n')
            .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
            as u32
            + 1;
        Loc { line, col }
    }
}

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Not valid TOML, or a key or value of the wrong shape.
    Syntax,
    /// A name, key, address, action, verdict or port that is not valid.
    BadValue,
    /// A circle that is not defined.
    UnknownCircle,
    /// Circles that contain each other.
    Cycle,
    /// A test inside the policy did not get the verdict it expects.
    TestFailed,
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub loc: Loc,
    /// What kind.
    pub kind: ProblemKind,
    /// What is wrong, and the fix.
    pub message: String,
}

/// Why a policy was rejected: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file name used in messages.
    pub file: String,
    /// The problems (at least one).
    pub problems: Vec<Problem>,
}

impl PolicyError {
    pub(crate) fn new(file: &str, mut problems: Vec<Problem>) -> PolicyError {
        problems.sort_by_key(|p| p.loc);
        problems.dedup();
        PolicyError {
            file: file.to_string(),
            problems,
        }
    }

    /// True if some problem is of `kind`.
    pub fn has(&self, kind: ProblemKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, p.loc.line, p.loc.col, p.message
            )?;
        }
        Ok(())
    }
}

/// Collects problems while parsing and checking.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, loc: Loc, kind: ProblemKind, message: impl Into<String>) {
        self.0.push(Problem {
            loc,
            kind,
            message: message.into(),
        });
    }

    pub(crate) fn into_result<T>(self, file: &str, ok: T) -> Result<T, PolicyError> {
        if self.0.is_empty() {
            Ok(ok)
        } else {
            Err(PolicyError::new(file, self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let t = "ab\ncdé\nf";
        assert_eq!(Loc::of(t, 0), Loc { line: 1, col: 1 });
        assert_eq!(Loc::of(t, 4), Loc { line: 2, col: 2 });
        assert_eq!(Loc::of(t, t.len()), Loc { line: 3, col: 2 });
        assert_eq!(Loc::of(t, 999), Loc { line: 3, col: 2 });
    }
}
