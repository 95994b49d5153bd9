//! Editing a policy file's text the way a person would: adding or removing one member of one
//! circle, keeping every comment and the layout. The caller checks the result with
//! [`crate::Policy::load`] before writing it anywhere.

use crate::parse::{check_circle_name, parse_subject};
use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not TOML (fix the file first).
    #[error("the policy file is not valid TOML ({0}); fix it first (meshctl policy check FILE)")]
    NotToml(String),
    /// The circle name or the member is not valid.
    #[error("{0}")]
    BadValue(String),
    /// `[circles]` or the circle is not of the shape a policy has.
    #[error("{0}")]
    BadShape(String),
    /// Removing a member that is not there.
    #[error("{member} is not a direct member of circle {circle:?}")]
    NotMember {
        /// The circle.
        circle: String,
        /// The member.
        member: String,
    },
    /// The circle does not exist.
    #[error("there is no circle {0:?}")]
    NoCircle(String),
}

fn open(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>()
        .map_err(|e| EditError::NotToml(e.to_string().trim().to_string()))
}

fn normalise(member: &str) -> Result<String, EditError> {
    let s = parse_subject(member.trim()).map_err(EditError::BadValue)?;
    if s == crate::Subject::Any {
        return Err(EditError::BadValue(
            "\"any\" cannot be a circle member; it names everybody".into(),
        ));
    }
    Ok(s.to_string())
}

/// Adds `member` (a key, an address or `circle:NAME`) to `circle`, creating the circle if it
/// does not exist. Returns the new text, or `None` if the member was there already.
pub fn add_member(text: &str, circle: &str, member: &str) -> Result<Option<String>, EditError> {
    check_circle_name(circle).map_err(EditError::BadValue)?;
    let member = normalise(member)?;
    let mut doc = open(text)?;
    let circles = doc
        .entry("circles")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| EditError::BadShape("circles is not a table".into()))?;
    let list = circles
        .entry(circle)
        .or_insert(Item::Value(Value::Array(Array::new())))
        .as_array_mut()
        .ok_or_else(|| EditError::BadShape(format!("circle {circle:?} is not a list")))?;
    if list
        .iter()
        .any(|v| v.as_str().is_some_and(|s| same(s, &member)))
    {
        return Ok(None);
    }
    // The new member is laid out like the last one (on its own line if they are), and
    // nothing else is touched: comments stay where they are.
    let prefix = list
        .iter()
        .last()
        .and_then(|v| v.decor().prefix())
        .and_then(|p| p.as_str())
        .map(|p| {
            // Only the layout of the prefix (a newline and indentation), not a comment in it.
            match p.rfind('\n') {
                Some(i) => format!("\n{}", &p[i + 1..]),
                None => p.to_string(),
            }
        });
    list.push(member);
    if let (Some(p), Some(v)) = (prefix, list.iter_mut().last()) {
        v.decor_mut().set_prefix(p);
    }
    Ok(Some(doc.to_string()))
}

/// Removes `member` from `circle`. Returns the new text.
pub fn remove_member(text: &str, circle: &str, member: &str) -> Result<String, EditError> {
    let wanted = normalise(member)?;
    let mut doc = open(text)?;
    let list = doc
        .get_mut("circles")
        .and_then(|c| c.as_table_like_mut())
        .and_then(|c| c.get_mut(circle))
        .ok_or_else(|| EditError::NoCircle(circle.to_string()))?
        .as_array_mut()
        .ok_or_else(|| EditError::BadShape(format!("circle {circle:?} is not a list")))?;
    let before = list.len();
    list.retain(|v| !v.as_str().is_some_and(|s| same(s, &wanted)));
    if list.len() == before {
        return Err(EditError::NotMember {
            circle: circle.to_string(),
            member: wanted,
        });
    }
    Ok(doc.to_string())
}

/// The same subject, however it is written (upper-case hex, a differently spelled address).
fn same(written: &str, normalised: &str) -> bool {
    parse_subject(written.trim()).is_ok_and(|s| s.to_string() == normalised)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    #[test]
    fn add_and_remove_keep_comments() {
        let text = "# my policy\n[circles]\n# friends\nfamily = [] # none yet\n";
        let t = add_member(text, "family", K)
            .expect("add")
            .expect("changed");
        assert!(t.contains("# my policy") && t.contains("# friends"), "{t}");
        assert!(t.contains(K));
        assert_eq!(
            add_member(&t, "family", &K.to_uppercase()).expect("again"),
            None
        );
        let t2 = add_member(&t, "guests", "circle:family")
            .expect("new circle")
            .expect("changed");
        assert!(t2.contains("guests = [\"circle:family\"]"), "{t2}");
        let t3 = remove_member(&t2, "family", K).expect("remove");
        assert!(!t3.contains(K) && t3.contains("# friends"), "{t3}");
        assert!(matches!(
            remove_member(&t3, "family", K),
            Err(EditError::NotMember { .. })
        ));
        assert!(matches!(
            remove_member(&t3, "nobody", K),
            Err(EditError::NoCircle(_))
        ));
        assert!(matches!(
            add_member(&t3, "family", "any"),
            Err(EditError::BadValue(_))
        ));
        assert!(matches!(
            add_member(&t3, "fam ily", K),
            Err(EditError::BadValue(_))
        ));
        assert!(matches!(
            add_member("[[", "a", K),
            Err(EditError::NotToml(_))
        ));
    }

    #[test]
    fn a_commented_multi_line_list_keeps_its_comments() {
        let text = format!(
            "[circles]\nfamily = [\n  \"{K}\",  # Ana\n  \"600::1\",  # Ben\n  \"600::2\",  # Carl\n  \"600::3\",  # Dan\n]\n"
        );
        let t = add_member(&text, "family", "600::4")
            .expect("add")
            .expect("changed");
        for name in ["# Ana", "# Ben", "# Carl", "# Dan"] {
            assert!(t.contains(name), "{name} lost:\n{t}");
        }
        assert!(
            t.contains("\n  \"600::4\""),
            "laid out like the others:\n{t}"
        );
        crate::Policy::load(&t, "p.toml").expect("still valid");
    }

    #[test]
    fn creates_the_circles_table() {
        let t = add_member("default = \"deny\"\n", "ops", K)
            .expect("add")
            .expect("changed");
        let p = crate::Policy::load(&t, "p.toml").expect("valid");
        assert_eq!(p.circle_members("ops").map(|m| m.len()), Some(1));
    }
}
