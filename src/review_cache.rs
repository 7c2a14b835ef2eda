//! What `grove review` remembers between runs, in `$GROVE_HOME/cache/review-<workspace>.json`
//! (a file of its own, not the store: it can be lost or damaged at no cost).
//!
//! Only answers that cannot go stale are kept:
//! - per repository, results that are functions of commit ids (ahead/behind counts, diffstats,
//!   merge predictions, the files a base move changed). Commits never change; what else git
//!   reads to compute them (its version, the repository's config, shallow and graft files,
//!   replace refs, the top-level and `info/` attributes) goes into a salt, and a repository
//!   whose salt changed starts over;
//! - per worktree, the files its index flags skip-worktree or assume-unchanged, keyed by the
//!   index's own checksum (a hash of all its content). Whether those files were edited is
//!   checked again every time.
//!
//! What `git status` found in a worktree is remembered only under the review watcher's word
//! that nothing happened there since (see [`crate::watch`]); without a watcher it runs every
//! time, since only a look at every file can tell that none was edited (git's untracked cache
//! spares it the folders that did not change, see [`Repo::dirty_paths_cached`]). A file that does not parse is no cache;
//! each run writes back only the entries it used, so envs that are gone drop out.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::git::{self, Repo};

/// Bumped whenever what an entry means changes: an older file is then no cache.
const VERSION: u32 = 1;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Data {
    version: u32,
    /// By repository path.
    repos: BTreeMap<String, RepoData>,
    /// By worktree path.
    indexes: BTreeMap<String, IndexData>,
    /// By worktree path: what `git status` found, under the watcher's key (see
    /// [`crate::watch`]) and the worktree's HEAD and index then.
    #[serde(default)]
    statuses: BTreeMap<String, StatusData>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StatusData {
    key: String,
    paths: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct RepoData {
    salt: String,
    /// By what was asked and of which commits (`count BASE TIP`).
    results: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct IndexData {
    checksum: String,
    flagged: Vec<(String, String)>,
}

pub struct ReviewCache {
    path: PathBuf,
    old: Data,
    new: Mutex<Data>,
    /// Per repository, its salt now; `None`: nothing of it is remembered.
    salts: HashMap<PathBuf, Option<String>>,
}

impl ReviewCache {
    pub fn path(home: &Path, ws_key: &str) -> PathBuf {
        home.join("cache").join(format!("review-{ws_key}.json"))
    }

    /// The cache of the workspace `ws_key`, empty when absent, unreadable or of another
    /// version.
    pub fn load(home: &Path, ws_key: &str) -> Self {
        let path = Self::path(home, ws_key);
        let old = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Data>(&b).ok())
            .filter(|d| d.version == VERSION)
            .unwrap_or_default();
        Self {
            path,
            old,
            new: Mutex::new(Data {
                version: VERSION,
                ..Data::default()
            }),
            salts: HashMap::new(),
        }
    }

    /// Sets `repo`'s salt for this run (see [`RepoConfig::salt`]); a repository without one is
    /// not cached.
    pub fn set_salt(&mut self, repo: &Path, salt: Option<String>) {
        self.salts.insert(repo.to_path_buf(), salt);
    }

    /// `repo`'s salt for this run, if it is cached at all.
    pub fn salt(&self, repo: &Path) -> Option<&str> {
        self.salts.get(repo)?.as_deref()
    }

    /// The answer to `key` (what is asked, of which commits) in `repo`: remembered, or
    /// computed by `compute` and remembered when it succeeds.
    pub fn commits<T: Serialize + DeserializeOwned>(
        &self,
        repo: &Path,
        key: &str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let (Some(Some(salt)), Some(name)) = (self.salts.get(repo), repo.to_str()) else {
            return compute();
        };
        let hit = self
            .old
            .repos
            .get(name)
            .filter(|r| r.salt == *salt)
            .and_then(|r| r.results.get(key));
        let (value, json) = match hit.and_then(|v| Some((T::deserialize(v).ok()?, v.clone()))) {
            Some(hit) => hit,
            None => {
                let value = compute()?;
                let Ok(json) = serde_json::to_value(&value) else {
                    return Ok(value);
                };
                (value, json)
            }
        };
        let mut new = self.new.lock().expect("no panic while holding the lock");
        let entry = new.repos.entry(name.to_string()).or_default();
        entry.salt.clone_from(salt);
        entry.results.insert(key.to_string(), json);
        Ok(value)
    }

    /// The files of `worktree`'s index flagged skip-worktree or assume-unchanged, remembered
    /// by the index's checksum. An index read to have none needs no git at all.
    pub fn flagged(&self, worktree: &Path) -> Result<Vec<(String, String)>> {
        let Some(name) = worktree.to_str() else {
            return Repo::flagged_files(worktree);
        };
        let known = self.old.indexes.get(name);
        let (key, flagged) = match (git::index_checksum(worktree), known) {
            (Some(key), Some(i)) if i.checksum == key => (key, i.flagged.clone()),
            _ => {
                let Some((bytes, key)) = git::index_bytes(worktree) else {
                    return Repo::flagged_files(worktree);
                };
                if git::parse::index_has_flags(&bytes) == Some(false) {
                    (key, Vec::new())
                } else {
                    let flagged = Repo::flagged_files(worktree)?;
                    // Written while git read it: the answer is right for some index, maybe
                    // not this key's.
                    if git::index_checksum(worktree).as_ref() != Some(&key) {
                        return Ok(flagged);
                    }
                    (key, flagged)
                }
            }
        };
        let mut new = self.new.lock().expect("no panic while holding the lock");
        new.indexes.insert(
            name.to_string(),
            IndexData {
                checksum: key,
                flagged: flagged.clone(),
            },
        );
        Ok(flagged)
    }

    /// What `git status` says of `worktree` (see [`Repo::dirty_paths_cached`]): remembered
    /// while `key` holds (the watcher saw no change there, and its HEAD and index are the same),
    /// else computed by `compute`. Without a key, always computed and not remembered.
    pub fn status(
        &self,
        worktree: &Path,
        key: Option<String>,
        compute: impl FnOnce() -> Result<Vec<String>>,
    ) -> Result<Vec<String>> {
        let (Some(key), Some(name)) = (key, worktree.to_str()) else {
            return compute();
        };
        let paths = match self.old.statuses.get(name).filter(|s| s.key == key) {
            Some(s) => s.paths.clone(),
            None => compute()?,
        };
        let mut new = self.new.lock().expect("no panic while holding the lock");
        new.statuses.insert(
            name.to_string(),
            StatusData {
                key,
                paths: paths.clone(),
            },
        );
        Ok(paths)
    }

    /// Writes what this run used back, when it differs from what was read. A cache that
    /// cannot be written is only a slower next run.
    pub fn save(self) {
        let new = self
            .new
            .into_inner()
            .expect("no panic while holding the lock");
        if new == self.old {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(&new) {
            let _ = crate::provision::write_atomic(&self.path, &bytes);
        }
    }
}

/// What review needs of a repository's configuration, read once per run.
pub struct RepoConfig {
    /// What besides commit ids decides the commit-level answers, hashed; `None`: nothing of
    /// this repository is remembered.
    pub salt: Option<String>,
    /// Whether `git status` may use git's untracked cache of the worktrees' indexes: yes
    /// unless the user set `core.untrackedCache` to something else than true.
    pub untracked_cache: bool,
}

/// `repo`'s [`RepoConfig`], from one `git config --list` (includes, `GIT_CONFIG_PARAMETERS`,
/// the global and system files, as git sees them) and a few files.
pub fn repo_config(repo: &Path, git_version: Option<&str>) -> RepoConfig {
    let config = Repo::new(repo)
        .cmd()
        .args(["config", "--list", "-z"])
        .run()
        .ok()
        .map(|o| o.stdout);
    RepoConfig {
        salt: git_version
            .zip(config.as_deref())
            .and_then(|(v, c)| salt(repo, v, c)),
        untracked_cache: config.as_deref().is_some_and(untracked_cache_allowed),
    }
}

/// Whether `config` (`git config --list -z`) leaves `core.untrackedCache` unset or true.
fn untracked_cache_allowed(config: &str) -> bool {
    // The last one wins; a key without a value is true.
    let last = config.split('\0').rev().find_map(|rec| {
        let (key, value) = rec.split_once('\n').unwrap_or((rec, "true"));
        key.eq_ignore_ascii_case("core.untrackedcache")
            .then_some(value)
    });
    last.is_none_or(|v| ["true", "yes", "on", "1"].contains(&v.to_ascii_lowercase().as_str()))
}

/// The salt of `repo`: `None` when it cannot be told from files (a reftable repository,
/// whose replace refs are not files).
fn salt(repo: &Path, git_version: &str, config: &str) -> Option<String> {
    let common = git::common_dir_fs(&git::git_dir_fs(repo)?);
    if common.join("reftable").exists() {
        return None;
    }
    let mut text = format!("{git_version}\0{config}\0");
    let read = |p: PathBuf| std::fs::read(p).unwrap_or_else(|_| b"-".to_vec());
    for file in [
        common.join("shallow"),
        common.join("info/grafts"),
        common.join("info/attributes"),
        repo.join(".gitattributes"),
    ] {
        text.push_str(&String::from_utf8_lossy(&read(file)));
        text.push('\0');
    }
    let packed = read(common.join("packed-refs"));
    for line in String::from_utf8_lossy(&packed).lines() {
        if line.contains(" refs/replace/") {
            text.push_str(line);
            text.push('\n');
        }
    }
    replace_refs(&common.join("refs/replace"), &mut text);
    for var in [
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_GRAFT_FILE",
        "GIT_SHALLOW_FILE",
        "GIT_ATTR_SOURCE",
    ] {
        text.push_str(&format!("{var}={:?}\0", std::env::var_os(var)));
    }
    Some(format!("{:016x}", crate::paths::fnv1a(text.as_bytes())))
}

/// Loose replace refs under `dir`, names and targets, appended to `text`.
fn replace_refs(dir: &Path, text: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            replace_refs(&path, text);
        } else if let Ok(target) = std::fs::read_to_string(&path) {
            text.push_str(&format!("{} {}\n", path.display(), target.trim()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_foreign_file_is_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = ReviewCache::path(dir.path(), "ws");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for bad in [
            &b"{\"version\": 1, \"repos\""[..],
            b"\0\xff",
            b"{\"version\": 999}",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(ReviewCache::load(dir.path(), "ws").old, Data::default());
        }
    }

    #[test]
    fn remembers_what_was_used_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new("/r");
        let run = |keys: &[&str], salt: &str| {
            let mut c = ReviewCache::load(dir.path(), "ws");
            c.set_salt(repo, Some(salt.into()));
            let mut computed = Vec::new();
            for k in keys {
                let v: u32 = c
                    .commits(repo, k, || {
                        computed.push((*k).to_string());
                        Ok(7)
                    })
                    .unwrap();
                assert_eq!(v, 7);
            }
            c.save();
            computed
        };
        assert_eq!(run(&["a", "b"], "s"), ["a", "b"]);
        assert!(run(&["a", "b"], "s").is_empty());
        // `b` was not used: dropped; `a` is still there.
        assert!(run(&["a"], "s").is_empty());
        assert_eq!(run(&["a", "b"], "s"), ["b"]);
        // Another salt: everything again.
        assert_eq!(run(&["a", "b"], "t"), ["a", "b"]);
    }

    #[test]
    fn the_untracked_cache_is_used_unless_turned_off() {
        let list = |recs: &[&str]| recs.iter().map(|r| format!("{r}\0")).collect::<String>();
        assert!(untracked_cache_allowed(""));
        assert!(untracked_cache_allowed(&list(&["user.name\nme"])));
        assert!(untracked_cache_allowed(&list(&[
            "core.untrackedcache\nTrue"
        ])));
        assert!(untracked_cache_allowed(&list(&["core.untrackedcache"])));
        for off in ["false", "keep", "0", "no", ""] {
            let config = list(&[&format!("core.untrackedcache\n{off}")]);
            assert!(!untracked_cache_allowed(&config), "{off}");
        }
        // The last one wins, as in git.
        let config = list(&["core.untrackedcache\nfalse", "core.untrackedCache\ntrue"]);
        assert!(untracked_cache_allowed(&config));
        let config = list(&["core.untrackedcache\ntrue", "core.untrackedcache\nkeep"]);
        assert!(!untracked_cache_allowed(&config));
    }

    #[test]
    fn a_repository_without_salt_and_a_failure_are_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new("/r");
        let mut c = ReviewCache::load(dir.path(), "ws");
        c.set_salt(repo, None);
        let _: u32 = c.commits(repo, "a", || Ok(1)).unwrap();
        c.set_salt(repo, Some("s".into()));
        assert!(
            c.commits::<u32>(repo, "b", || Err(anyhow::anyhow!("no")))
                .is_err()
        );
        assert!(!c.new.lock().unwrap().repos.contains_key("/r"));
    }
}
