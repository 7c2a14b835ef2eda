//! Agent state from the agent's own lifecycle hooks, never from scraping its screen.
//!
//! `grove agent-status STATE` is what a hook calls; with `--hook` it reads the JSON Claude Code
//! passes to hooks on stdin and maps its event to a state. `grove hooks install claude` merges
//! those hooks into a worktree's `.claude/settings.local.json`.

use crate::state::AgentState;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::error::Fail;

pub const STATES: &[&str] = &["working", "waiting", "done", "exited"];

/// The state a Claude Code hook event means, if any. Notifications other than the ones that
/// wait for the human (`auth_success`, …) change nothing.
pub fn state_of_event(input: &Value) -> Option<AgentState> {
    match input["hook_event_name"].as_str()? {
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "SessionStart" => {
            Some(AgentState::Working)
        }
        "Notification" => match input["notification_type"].as_str() {
            None | Some("permission_prompt" | "idle_prompt" | "elicitation_dialog") => {
                Some(AgentState::Waiting)
            }
            Some(_) => None,
        },
        "Stop" => Some(AgentState::Done),
        "SessionEnd" => Some(AgentState::Exited),
        _ => None,
    }
}

/// What a `waiting` event waits for: `permission` (a dialog, which typed text would answer)
/// or `input` (the agent's prompt).
pub fn detail_of_event(input: &Value) -> Option<&'static str> {
    if input["hook_event_name"].as_str()? != "Notification" {
        return None;
    }
    match input["notification_type"].as_str() {
        Some("permission_prompt") => Some("permission"),
        Some("idle_prompt" | "elicitation_dialog") => Some("input"),
        Some(_) => None,
        // Older Claude Code sends only a message: "Claude needs your permission to use Bash".
        None => Some(
            if input["message"]
                .as_str()
                .is_some_and(|m| m.to_lowercase().contains("permission"))
            {
                "permission"
            } else {
                "input"
            },
        ),
    }
}

/// The events grove listens to, each with the matcher it needs.
const EVENTS: &[(&str, Option<&str>)] = &[
    ("UserPromptSubmit", None),
    ("PreToolUse", Some("*")),
    ("PostToolUse", Some("*")),
    ("Notification", None),
    ("Stop", None),
    ("SessionEnd", None),
];

/// Adds grove's hooks to the settings in `text` (a JSON object, or empty), keeping every entry
/// already there; an event that already runs `command` is left alone.
pub fn merge_claude_settings(text: &str, command: &str) -> Result<String> {
    let mut root: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(text).context("the settings file is not valid JSON")?
    };
    let Some(obj) = root.as_object_mut() else {
        return Err(Fail::new("the settings file is not a JSON object").into());
    };
    let hooks = obj.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else {
        return Err(Fail::new("`hooks` in the settings file is not an object").into());
    };
    for (event, matcher) in EVENTS {
        let list = hooks.entry(*event).or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else {
            return Err(Fail::new(format!(
                "`hooks.{event}` in the settings file is not a list"
            ))
            .into());
        };
        let present = list.iter().any(|group| {
            group["hooks"]
                .as_array()
                .is_some_and(|hs| hs.iter().any(|h| h["command"] == command))
        });
        if present {
            continue;
        }
        let mut group = json!({ "hooks": [{ "type": "command", "command": command }] });
        if let Some(m) = matcher {
            group["matcher"] = json!(m);
        }
        list.push(group);
    }
    Ok(serde_json::to_string_pretty(&root)? + "\n")
}

/// Installs grove's Claude Code hooks in `worktree`'s `.claude/settings.local.json` (which
/// Claude Code reads and git must not track: kept out of the diff like the dotenv file).
pub fn install_claude(repo: Option<&crate::git::Repo>, worktree: &Path, grove: &str) -> Result<()> {
    let rel = ".claude/settings.local.json";
    let path = worktree.join(rel);
    let text = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let command = format!("{grove} agent-status --hook");
    let merged = merge_claude_settings(&text, &command)
        .with_context(|| format!("merging grove's hooks into {}", path.display()))?;
    crate::provision::write_atomic(&path, merged.as_bytes())?;
    if let Some(repo) = repo {
        crate::provision::keep_out_of_diff(repo, worktree, rel)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_events_map_to_states() {
        let s = |j: Value| state_of_event(&j).map(AgentState::as_str);
        assert_eq!(
            s(json!({"hook_event_name": "UserPromptSubmit"})),
            Some("working")
        );
        assert_eq!(
            s(json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"})),
            Some("working")
        );
        assert_eq!(
            s(json!({"hook_event_name": "PostToolUse"})),
            Some("working")
        );
        for t in ["permission_prompt", "idle_prompt", "elicitation_dialog"] {
            assert_eq!(
                s(json!({"hook_event_name": "Notification", "notification_type": t})),
                Some("waiting")
            );
        }
        assert_eq!(
            s(json!({"hook_event_name": "Notification", "notification_type": "auth_success"})),
            None
        );
        assert_eq!(
            s(json!({"hook_event_name": "Notification", "message": "x"})),
            Some("waiting")
        );
        assert_eq!(s(json!({"hook_event_name": "Stop"})), Some("done"));
        assert_eq!(
            s(json!({"hook_event_name": "SessionEnd", "reason": "exit"})),
            Some("exited")
        );
        assert_eq!(s(json!({"hook_event_name": "PreCompact"})), None);
        assert_eq!(s(json!({})), None);
    }

    #[test]
    fn merge_keeps_the_users_hooks_and_is_idempotent() {
        let user = r#"{"permissions": {"allow": ["Bash(ls)"]},
            "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}"#;
        let once = merge_claude_settings(user, "grove agent-status --hook").unwrap();
        let v: Value = serde_json::from_str(&once).unwrap();
        assert_eq!(v["permissions"]["allow"][0], "Bash(ls)");
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2);
        assert_eq!(stop[0]["hooks"][0]["command"], "notify-send done");
        assert_eq!(stop[1]["hooks"][0]["command"], "grove agent-status --hook");
        assert_eq!(v["hooks"]["PreToolUse"][0]["matcher"], "*");
        let twice = merge_claude_settings(&once, "grove agent-status --hook").unwrap();
        assert_eq!(once, twice);
        assert!(merge_claude_settings("[1]", "x").is_err());
        assert!(merge_claude_settings("{not json", "x").is_err());
    }
}
