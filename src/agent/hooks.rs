//! Agent state from the agent's own lifecycle hooks, never from scraping its screen.
//!
//! `grove agent-status STATE` is what a hook calls; with `--hook` it reads the JSON the agent
//! passes to hooks on stdin (Claude Code, Codex and Gemini CLI send the same shape: a
//! `hook_event_name` and a `cwd`) and maps its event to a state; with `--notify JSON` it reads
//! what Codex gives its `notify` program. `grove hooks install claude|codex|gemini` merges
//! grove's hooks into each agent's own settings file in a worktree.

use crate::state::AgentState;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::error::Fail;

/// The state a Claude Code hook event means, if any. Notifications other than the ones that
/// wait for the human (`auth_success`, …) change nothing.
pub fn state_of_event(input: &Value) -> Option<AgentState> {
    match input["hook_event_name"].as_str()? {
        // Claude Code and Codex; Gemini CLI's own names.
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "SessionStart" | "BeforeAgent"
        | "BeforeTool" | "AfterTool" => Some(AgentState::Working),
        "Notification" => match input["notification_type"].as_str() {
            None
            | Some("permission_prompt" | "idle_prompt" | "elicitation_dialog" | "ToolPermission") => {
                Some(AgentState::Waiting)
            }
            Some(_) => None,
        },
        "PermissionRequest" => Some(AgentState::Waiting),
        "Stop" | "AfterAgent" => Some(AgentState::Done),
        "SessionEnd" => Some(AgentState::Exited),
        _ => None,
    }
}

/// Whether the event is the end of a turn whose hook may answer "go on with this".
pub fn is_stop(input: &Value) -> bool {
    matches!(
        input["hook_event_name"].as_str(),
        Some("Stop" | "AfterAgent")
    )
}

/// The state in what Codex passes its `notify` program (the JSON is its last argument).
pub fn state_of_notify(input: &Value) -> Option<AgentState> {
    match input["type"].as_str()? {
        "agent-turn-complete" => Some(AgentState::Done),
        _ => None,
    }
}

/// What a `waiting` event waits for: `permission` (a dialog, which typed text would answer)
/// or `input` (the agent's prompt).
pub fn detail_of_event(input: &Value) -> Option<&'static str> {
    match input["hook_event_name"].as_str()? {
        "Notification" => {}
        "PermissionRequest" => return Some("permission"),
        _ => return None,
    }
    match input["notification_type"].as_str() {
        // An MCP server's form is a dialog too: typed text would fill it in.
        Some("permission_prompt" | "ToolPermission" | "elicitation_dialog") => Some("permission"),
        Some("idle_prompt") => Some("input"),
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

/// An agent whose hooks grove can install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Claude,
    Codex,
    Gemini,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "claude" => Some(Kind::Claude),
            "codex" => Some(Kind::Codex),
            "gemini" => Some(Kind::Gemini),
            _ => None,
        }
    }

    /// The settings file holding the agent's hooks, relative to the folder it works in.
    pub fn settings_file(self) -> &'static str {
        match self {
            // `.local`: Claude Code's per-machine file, which teams do not commit.
            Kind::Claude => ".claude/settings.local.json",
            Kind::Codex => ".codex/hooks.json",
            Kind::Gemini => ".gemini/settings.json",
        }
    }

    /// The events grove listens to, each with the matcher it needs (tool events).
    fn events(self) -> &'static [(&'static str, Option<&'static str>)] {
        match self {
            Kind::Claude => &[
                ("UserPromptSubmit", None),
                ("PreToolUse", Some("*")),
                ("PostToolUse", Some("*")),
                ("Notification", None),
                ("Stop", None),
                ("SessionEnd", None),
            ],
            // Codex has no SessionEnd: its exit is seen as its process ending.
            Kind::Codex => &[
                ("UserPromptSubmit", None),
                ("PreToolUse", None),
                ("PostToolUse", None),
                ("PermissionRequest", None),
                ("Stop", None),
            ],
            Kind::Gemini => &[
                ("BeforeAgent", None),
                ("BeforeTool", None),
                ("AfterTool", None),
                ("Notification", None),
                ("AfterAgent", None),
                ("SessionEnd", None),
            ],
        }
    }
}

/// Adds grove's hooks for `kind` to the settings in `text` (a JSON object, or empty), keeping
/// every entry already there; an event that already runs `command` is left alone.
pub fn merge_settings(kind: Kind, text: &str, command: &str) -> Result<String> {
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
    for (event, matcher) in kind.events() {
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

/// Installs grove's hooks for `kind` in `dir` (the folder the agent works in), kept out of
/// git's sight like the dotenv file. A settings file the repo tracks is left alone: grove's
/// lines would show in the env's diff.
pub fn install(
    kind: Kind,
    repo: Option<&crate::git::Repo>,
    dir: &Path,
    grove: &str,
) -> Result<PathBuf> {
    let rel = kind.settings_file();
    let path = dir.join(rel);
    if repo.is_some()
        && crate::git::git(dir)
            .args(["ls-files", "--error-unmatch", "--", rel])
            .check()
            .unwrap_or(false)
    {
        return Err(Fail::new(format!(
            "{rel} is tracked by the repo: grove's hooks in it would show in the env's diff"
        ))
        .hint("add grove's hooks to your user settings instead (see the README, \"The review loop\"), or commit them once for everyone")
        .into());
    }
    let text = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let command = format!("{grove} agent-status --hook");
    let merged = merge_settings(kind, &text, &command)
        .with_context(|| format!("merging grove's hooks into {}", path.display()))?;
    crate::provision::path_inside(dir, rel, "a hook settings file")?;
    crate::provision::write_atomic(&path, merged.as_bytes())?;
    if let Some(repo) = repo {
        crate::provision::keep_out_of_diff(repo, dir, rel)?;
    }
    Ok(path)
}

/// Installs grove's Claude Code hooks in `worktree`.
pub fn install_claude(repo: Option<&crate::git::Repo>, worktree: &Path, grove: &str) -> Result<()> {
    install(Kind::Claude, repo, worktree, grove).map(drop)
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
        let once = merge_settings(Kind::Claude, user, "grove agent-status --hook").unwrap();
        let v: Value = serde_json::from_str(&once).unwrap();
        assert_eq!(v["permissions"]["allow"][0], "Bash(ls)");
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2);
        assert_eq!(stop[0]["hooks"][0]["command"], "notify-send done");
        assert_eq!(stop[1]["hooks"][0]["command"], "grove agent-status --hook");
        assert_eq!(v["hooks"]["PreToolUse"][0]["matcher"], "*");
        let twice = merge_settings(Kind::Claude, &once, "grove agent-status --hook").unwrap();
        assert_eq!(once, twice);
        assert!(merge_settings(Kind::Claude, "[1]", "x").is_err());
        assert!(merge_settings(Kind::Claude, "{not json", "x").is_err());
    }
}
