//! A ticket's title and acceptance criteria, from its Markdown.
//!
//! The criteria are the list under a heading (or a bold or plain line ending in `:`) that
//! reads "acceptance criteria", "done when" or "definition of done"; without such a section,
//! every task-list item (`- [ ]`, `- [x]`) of the ticket. Continuation lines of an item join
//! it; a nested item is a criterion of its own.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criterion {
    pub text: String,
    /// Ticked in the ticket (`- [x]`).
    pub checked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub title: String,
    pub criteria: Vec<Criterion>,
}

/// Whether `line` (a heading, a bold line, or a line ending in `:`) names the criteria.
fn is_criteria_heading(line: &str) -> bool {
    let t = line.trim();
    let heading = t.starts_with('#');
    let bold = t.starts_with("**") || t.starts_with("__");
    let label = t.trim_end_matches(['*', '_']).ends_with(':');
    if !(heading || bold || label) {
        return false;
    }
    let words: String = t
        .trim_start_matches('#')
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    ["acceptance criteria", "done when", "definition of done"]
        .iter()
        .any(|k| words.starts_with(k))
}

fn heading_level(line: &str) -> Option<usize> {
    let t = line.trim_start();
    let n = t.chars().take_while(|c| *c == '#').count();
    (n > 0 && t[n..].starts_with([' ', '\t'])).then_some(n)
}

/// A list item: its indentation, checkbox (`Some(ticked)`), and text.
fn list_item(line: &str) -> Option<(usize, Option<bool>, String)> {
    let indent = line.len() - line.trim_start().len();
    let t = line.trim_start();
    let rest = if let Some(r) = t
        .strip_prefix("- ")
        .or_else(|| t.strip_prefix("* "))
        .or_else(|| t.strip_prefix("+ "))
    {
        r
    } else {
        let digits = t.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        t[digits..]
            .strip_prefix(". ")
            .or_else(|| t[digits..].strip_prefix(") "))?
    };
    let rest = rest.trim_start();
    let (checked, text) = match rest.get(..3) {
        Some("[ ]") => (Some(false), &rest[3..]),
        Some("[x]" | "[X]") => (Some(true), &rest[3..]),
        _ => (None, rest),
    };
    Some((indent, checked, text.trim().to_string()))
}

pub fn parse(text: &str, fallback_title: &str) -> Ticket {
    let lines: Vec<&str> = text.lines().collect();
    let title = lines
        .iter()
        .find_map(|l| {
            let t = l.trim();
            heading_level(t).map(|n| t[n..].trim().to_string())
        })
        .or_else(|| {
            lines
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| fallback_title.to_string());

    let mut section = Vec::new();
    if let Some(start) = lines.iter().position(|l| is_criteria_heading(l)) {
        let level = heading_level(lines[start]);
        collect(&lines[start + 1..], level, false, &mut section);
    }
    let criteria = if section.is_empty() {
        let mut all = Vec::new();
        collect(&lines, None, true, &mut all);
        all
    } else {
        section
    };
    Ticket { title, criteria }
}

/// Gathers list items from `lines` until a heading of `level` or higher (any heading, or a
/// paragraph after the list, when the section was not opened by a heading). With
/// `tasks_only`, only task-list items, through the whole text.
fn collect(lines: &[&str], level: Option<usize>, tasks_only: bool, out: &mut Vec<Criterion>) {
    let mut in_fence = false;
    let mut started = false;
    let mut last_was_item = false;
    for line in lines {
        let t = line.trim();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Any heading ends the section: a `### Notes` under it is not a criterion's.
        if !tasks_only && heading_level(t).is_some() {
            break;
        }
        match list_item(line) {
            Some((_, checked, text)) if !text.is_empty() => {
                if tasks_only && checked.is_none() {
                    last_was_item = false;
                    continue;
                }
                out.push(Criterion {
                    text,
                    checked: checked == Some(true),
                });
                started = true;
                last_was_item = true;
            }
            _ if t.is_empty() => {}
            // An indented line goes on with the item above it.
            _ if last_was_item && line.starts_with([' ', '\t']) => {
                if let Some(c) = out.last_mut() {
                    c.text.push(' ');
                    c.text.push_str(t);
                }
            }
            _ => {
                last_was_item = false;
                // A section opened by a plain line ends at the first paragraph after its list.
                if !tasks_only && level.is_none() && started {
                    break;
                }
            }
        }
    }
}

/// The criteria as a Markdown checklist, for prompts and context files.
pub fn render(criteria: &[Criterion]) -> String {
    criteria
        .iter()
        .map(|c| format!("- [{}] {}\n", if c.checked { "x" } else { " " }, c.text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &Ticket) -> Vec<&str> {
        t.criteria.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn task_list_anywhere() {
        let t = parse(
            "# Login page\n\nSome words.\n\n- [ ] a form with email\n- [x] errors shown\n  under the field\n- not a task\n\n```\n- [ ] in code\n```\n* [ ] last\n",
            "x",
        );
        assert_eq!(t.title, "Login page");
        assert_eq!(
            texts(&t),
            ["a form with email", "errors shown under the field", "last"]
        );
        assert!(t.criteria[1].checked);
        assert!(!t.criteria[0].checked);
    }

    #[test]
    fn section_under_a_heading() {
        let t = parse(
            "# Rate limit\n\n- [ ] unrelated task\n\n## Acceptance criteria\n\n1. 429 after 100 requests\n2. header `Retry-After`\n   - nested detail\n\n## Notes\n\n- not a criterion\n",
            "x",
        );
        assert_eq!(
            texts(&t),
            [
                "429 after 100 requests",
                "header `Retry-After`",
                "nested detail"
            ]
        );
    }

    #[test]
    fn section_after_a_done_when_line() {
        let t = parse(
            "Fix the export\nThe CSV export drops rows.\n\n**Done when:**\n- every row is exported\n- the test `export_all` passes\n\nMore prose.\n- stray item\n",
            "x",
        );
        assert_eq!(t.title, "Fix the export");
        assert_eq!(
            texts(&t),
            ["every row is exported", "the test `export_all` passes"]
        );
        let t = parse("Done when:\n* a\n* b\n", "x");
        assert_eq!(texts(&t), ["a", "b"]);
    }

    #[test]
    fn no_criteria_and_no_title() {
        let t = parse("\n\n", "feat-01");
        assert_eq!(t.title, "feat-01");
        assert!(t.criteria.is_empty());
        assert!(!is_criteria_heading("Acceptance criteria are hard"));
        assert!(is_criteria_heading("### Definition of Done"));
        assert_eq!(
            render(&parse("- [x] a\n- [ ] b", "x").criteria),
            "- [x] a\n- [ ] b\n"
        );
    }
}
