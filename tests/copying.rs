//! `copy` modes: every mode gives the worktree the same tree as `cp -a` (content, modes,
//! symbolic links), hard links share the source's inodes, reflinks fall back or fail as
//! asked, and the copies of several layers run at once.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestWorkspace, run, wait_until};

/// A small dependency folder with what trips copiers up: nested folders, an executable, a
/// private file, relative and dangling links, a name with spaces, an empty folder and a
/// read-only folder.
fn make_deps(dir: &Path) {
    let w = |rel: &str, text: &str, mode: u32| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for i in 0..60 {
        w(
            &format!("pkg{i}/lib/index.js"),
            &format!("module.exports = {i};\n"),
            0o644,
        );
        w(&format!("pkg{i}/package.json"), "{}\n", 0o644);
    }
    w("tool/bin/tool.js", "#!/usr/bin/env node\n", 0o755);
    w("secret/token", "s3cret\n", 0o600);
    w("with space/a file.txt", "spaces\n", 0o644);
    std::fs::create_dir_all(dir.join(".bin")).unwrap();
    symlink("../tool/bin/tool.js", dir.join(".bin/tool")).unwrap();
    symlink("../nowhere", dir.join(".bin/dangling")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    w("locked/readme", "read only folder\n", 0o644);
    std::fs::set_permissions(dir.join("locked"), std::fs::Permissions::from_mode(0o555)).unwrap();
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `root`, by relative path: type, permission bits, content or target.
fn tree(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        let e = if m.file_type().is_symlink() {
            Entry::Link(std::fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            Entry::Dir(mode)
        } else {
            Entry::File(mode, std::fs::read(&p).unwrap())
        };
        out.insert(rel, e);
    }
    out
}

/// `cp -a` of `src`, the reference every mode is held to.
fn cp_a(ws: &TestWorkspace, src: &Path) -> BTreeMap<String, Entry> {
    let dst = ws.tmp.path().join(format!(
        "reference-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    let ok = Command::new("cp")
        .args(["-a", "--"])
        .arg(src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(ok.success());
    let t = tree(&dst);
    make_writable(&dst);
    t
}

/// The read-only folder would stop the temp dir's removal.
fn make_writable(dir: &Path) {
    let locked = dir.join("locked");
    if locked.is_dir() && !locked.is_symlink() {
        let _ = std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755));
    }
}

fn ws_with_copy(mode: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    make_deps(&ws.repo("front").join("node_modules"));
    ws.write_config(&ws.standard_config(&format!(
        "copy = [{{ path = \"node_modules\", mode = \"{mode}\" }}]"
    )));
    ws
}

fn copies(out: &serde_json::Value, layer: &str) -> Vec<serde_json::Value> {
    out["made"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == layer)
        .unwrap_or_else(|| panic!("no timing for {layer} in {out}"))["copies"]
        .as_array()
        .unwrap()
        .clone()
}

fn inodes(root: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if m.is_file() {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(rel, (m.dev(), m.ino()));
        }
    }
    out
}

#[test]
fn every_mode_gives_the_tree_cp_a_gives() {
    for mode in ["copy", "auto", "hardlink", "symlink"] {
        let ws = ws_with_copy(mode);
        let src = ws.repo("front").join("node_modules");
        let reference = cp_a(&ws, &src);
        let out = ws
            .grove(&["create", "feat", "--no-start", "--json"])
            .success();
        let made = out.json();
        let c = copies(&made, "front");
        assert_eq!(c.len(), 1, "{made}");
        assert_eq!(c[0]["mode"], mode);
        let expected = match mode {
            "copy" => "copied",
            // The temp folder's filesystem decides; both are a full tree.
            "auto" => c[0]["done"]
                .as_str()
                .filter(|d| ["copied", "reflinked"].contains(d))
                .unwrap(),
            "hardlink" => "hardlinked",
            _ => "symlinked",
        };
        assert_eq!(c[0]["done"], expected, "{mode}: {made}");
        let dst = ws.worktree("feat", "front").join("node_modules");
        if mode == "symlink" {
            assert!(dst.is_symlink(), "symlink mode makes one link");
            assert_eq!(std::fs::read_link(&dst).unwrap(), src);
        } else {
            assert!(!dst.is_symlink());
            assert_eq!(c[0]["files"], 124, "{mode}: files counted: {made}");
        }
        let dst_real = std::fs::canonicalize(&dst).unwrap();
        assert_eq!(tree(&dst_real), reference, "mode {mode} differs from cp -a");
        // The copy is not the env's work: destroy without --force succeeds.
        make_writable(&dst_real);
        ws.grove(&["destroy", "feat", "--yes"]).success();
        assert!(
            src.join("pkg0/lib/index.js").is_file(),
            "{mode}: source intact"
        );
        make_writable(&src);
    }
}

#[test]
fn hardlinks_share_the_source_inodes_and_need_no_new_data_blocks() {
    let ws = ws_with_copy("hardlink");
    let src = ws.repo("front").join("node_modules");
    ws.grove(&["create", "feat", "--no-start"]).success();
    let dst = ws.worktree("feat", "front").join("node_modules");
    let a = inodes(&src);
    let b = inodes(&dst);
    assert_eq!(a.len(), 124);
    assert_eq!(
        a, b,
        "every file is the source's own inode: no data block was written"
    );
    make_writable(&dst);
    make_writable(&src);
}

#[test]
fn a_symlinked_folder_is_not_uncommitted_work() {
    // `node_modules/` in .gitignore matches folders only: the link would show as untracked.
    let ws = ws_with_copy("symlink");
    ws.grove(&["create", "feat", "--no-start"]).success();
    let wt = ws.worktree("feat", "front");
    let status = ws.git(&wt, &["status", "--porcelain"]);
    assert_eq!(status, "", "the link is kept out of git status");
    ws.grove(&["destroy", "feat", "--yes"]).success();
    make_writable(&ws.repo("front").join("node_modules"));
}

#[test]
fn reflink_on_a_filesystem_without_it_fails_and_auto_falls_back() {
    let ws = ws_with_copy("reflink");
    let probe = ws.tmp.path().join("probe");
    std::fs::write(&probe, "x").unwrap();
    let can = Command::new("cp")
        .args(["--reflink=always"])
        .arg(&probe)
        .arg(ws.tmp.path().join("probe2"))
        .status()
        .unwrap()
        .success();
    if can {
        #[allow(clippy::print_stderr, reason = "a test that cannot run here says why")]
        {
            eprintln!("the temp folder reflinks: this case runs on filesystems without reflink");
        }
        make_writable(&ws.repo("front").join("node_modules"));
        return;
    }
    let before = ws.snapshot(&["front", "api"]);
    let out = ws.grove(&["create", "feat", "--no-start"]).failure(1);
    assert!(out.stderr.contains("cannot be reflinked"), "{out}");
    assert!(
        out.stderr.contains("hardlink"),
        "the hint names a mode that works: {out}"
    );
    assert_eq!(
        ws.snapshot(&["front", "api"]),
        before,
        "nothing left behind"
    );
    assert!(!ws.env_dir("feat").exists());

    ws.write_config(&ws.standard_config("copy = [{ path = \"node_modules\", mode = \"auto\" }]"));
    let made = ws
        .grove(&["create", "feat", "--no-start", "--json"])
        .success()
        .json();
    assert_eq!(copies(&made, "front")[0]["done"], "copied", "{made}");
    make_writable(&ws.worktree("feat", "front").join("node_modules"));
    make_writable(&ws.repo("front").join("node_modules"));
}

/// An XFS filesystem with reflink, loop-mounted in the test's folder; unmounted on drop.
struct Xfs {
    mnt: PathBuf,
}

impl Xfs {
    fn mount(ws: &TestWorkspace) -> Option<Xfs> {
        if !nix::unistd::Uid::effective().is_root() {
            return None;
        }
        let img = ws.tmp.path().join("xfs.img");
        let mnt = ws.tmp.path().join("xfs");
        std::fs::create_dir_all(&mnt).unwrap();
        let sh = |cmd: &mut Command| {
            let out = run(cmd);
            assert_eq!(out.code, 0, "{out}");
        };
        // 300 MB: the smallest XFS that mkfs.xfs accepts, sparse on disk.
        sh(Command::new("truncate").args(["-s", "300M"]).arg(&img));
        sh(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&img));
        sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        Some(Xfs { mnt })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

#[test]
fn reflink_shares_blocks_on_a_filesystem_that_can() {
    let ws = TestWorkspace::empty();
    let Some(xfs) = Xfs::mount(&ws) else {
        #[allow(clippy::print_stderr, reason = "a test that cannot run here says why")]
        {
            eprintln!("not root: cannot mount an XFS image to test reflinks");
        }
        return;
    };
    // The repo and the envs folder on XFS: reflinks work within one filesystem.
    let repo = xfs.mnt.join("front");
    std::fs::create_dir_all(&repo).unwrap();
    ws.git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join(".gitignore"), "node_modules/\n").unwrap();
    ws.git(&repo, &["add", "--all"]);
    ws.git(&repo, &["commit", "--quiet", "-m", "init"]);
    make_deps(&repo.join("node_modules"));
    let reference = cp_a(&ws, &repo.join("node_modules"));
    for mode in ["reflink", "auto"] {
        ws.write_config(&format!(
            "[workspace]\nenvs_dir = \"{envs}\"\n[layers.front]\nrepo = \"{repo}\"\n\
             copy = [{{ path = \"node_modules\", mode = \"{mode}\" }}]\n",
            envs = xfs.mnt.join("envs").display(),
            repo = repo.display()
        ));
        let made = ws
            .grove(&["create", "feat", "--no-start", "--json"])
            .success()
            .json();
        assert_eq!(
            copies(&made, "front")[0]["done"],
            "reflinked",
            "{mode}: {made}"
        );
        let dst = xfs.mnt.join("envs/feat/front/node_modules");
        assert_eq!(tree(&dst), reference);
        make_writable(&dst);
        ws.grove(&["destroy", "feat", "--yes"]).success();
    }
    make_writable(&repo.join("node_modules"));
}

#[test]
fn copies_of_several_layers_run_at_once() {
    // Each layer's copy is a `cp` of 100 MB of real data, long enough to be seen running: in
    // parallel, the copies of both layers are seen at the same moment; one after the other,
    // never.
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    for repo in ["front", "api"] {
        let deps = ws.repo(repo).join("node_modules");
        std::fs::create_dir_all(&deps).unwrap();
        let mut f = std::io::BufWriter::new(std::fs::File::create(deps.join("big.bin")).unwrap());
        let block = vec![7u8; 1 << 20];
        for _ in 0..100 {
            std::io::Write::write_all(&mut f, &block).unwrap();
        }
    }
    let mut config = ws.standard_config("copy = [{ path = \"node_modules\", mode = \"copy\" }]");
    config.push_str("copy = [{ path = \"node_modules\", mode = \"copy\" }]\n");
    ws.write_config(&config);
    let mut child = ws
        .cmd()
        .args(["create", "feat", "--no-start", "--from-api=main"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut both = false;
    while child.try_wait().unwrap().is_none() {
        let copying: std::collections::BTreeSet<String> = ws
            .tagged_processes()
            .into_iter()
            .filter_map(|(_, tag)| {
                let layer = tag.split(':').nth(2)?;
                Some(layer.split('@').next().unwrap_or(layer).to_string())
            })
            .collect();
        if copying.contains("front") && copying.contains("api") {
            both = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    assert!(both, "the two layers' copies never ran at the same time");
}

#[test]
fn ps_reports_disk_use_beyond_the_checkout_counting_hard_links_once() {
    let mut seen = Vec::new();
    for mode in ["copy", "hardlink"] {
        let ws = ws_with_copy(mode);
        // 2 MB of real data: what a copy costs and a hard-link tree does not.
        std::fs::write(
            ws.repo("front").join("node_modules/big.bin"),
            vec![1u8; 2 << 20],
        )
        .unwrap();
        // 3 MB in the checkout: the worktree has it too, but it is not the env's cost.
        let front = ws.repo("front");
        std::fs::write(front.join("tracked.bin"), vec![2u8; 3 << 20]).unwrap();
        ws.git(&front, &["add", "tracked.bin"]);
        ws.git(&front, &["commit", "--quiet", "-m", "a big tracked file"]);
        ws.grove(&["create", "feat", "--no-start"]).success();
        let env = crate::common::env_json(&ws, "feat");
        let disk = &env["disk"];
        let apparent = disk["apparent_bytes"].as_u64().unwrap();
        let on_disk = disk["on_disk_bytes"].as_u64().unwrap();
        let shared = disk["shared_bytes"].as_u64().unwrap();
        assert!(apparent >= 2 << 20, "{mode}: {disk}");
        assert!(
            apparent < 3 << 20,
            "{mode}: the checkout is not counted: {disk}"
        );
        assert!(disk["files"].as_u64().unwrap() >= 125, "{mode}: {disk}");
        match mode {
            "copy" => {
                assert!(on_disk >= 2 << 20, "a copy costs its blocks: {disk}");
                assert_eq!(shared, 0, "{disk}");
            }
            _ => {
                assert!(on_disk < 1 << 20, "hard links cost no data blocks: {disk}");
                assert!(shared >= 2 << 20 && shared <= apparent, "{disk}");
            }
        }
        seen.push(apparent);
        make_writable(&ws.worktree("feat", "front").join("node_modules"));
        make_writable(&ws.repo("front").join("node_modules"));
    }
    assert_eq!(seen[0], seen[1], "the same files either way");
}

#[test]
fn a_running_env_has_its_disk_measured_by_its_supervisor() {
    let ws = crate::common::servers_ws("copy = [\".env\"]", "");
    std::fs::write(ws.repo("front").join(".env"), "X=1\n").unwrap();
    ws.grove(&["create", "feat"]).success();
    assert!(
        wait_until(10, || !crate::common::env_json(&ws, "feat")["disk"]
            .is_null()),
        "never measured"
    );
    let env = crate::common::env_json(&ws, "feat");
    assert!(env["disk"]["apparent_bytes"].as_u64().unwrap() > 0, "{env}");
}

#[test]
fn up_measures_the_disk_again_of_an_env_without_servers_or_already_up() {
    let apparent = |ws: &TestWorkspace| {
        crate::common::env_json(ws, "feat")["disk"]["apparent_bytes"]
            .as_u64()
            .unwrap_or(0)
    };
    let copy = "copy = [{ path = \"node_modules\", mode = \"copy\" }]";
    for running in [false, true] {
        let ws = if running {
            crate::common::servers_ws(copy, "")
        } else {
            let ws = TestWorkspace::with_repos(&["front", "api"]);
            ws.write_config(&ws.standard_config(copy));
            ws
        };
        let deps = ws.repo("front").join("node_modules/dep");
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::write(deps.join("index.js"), "1\n").unwrap();
        ws.grove(&["create", "feat"]).success();
        // Measured once made: by create, or by the supervisor it started.
        assert!(wait_until(10, || apparent(&ws) > 0), "never measured");
        let before = apparent(&ws);
        // An install in the env grows its dependency folder by 4 MB.
        std::fs::write(
            ws.worktree("feat", "front")
                .join("node_modules/dep/big.bin"),
            vec![1u8; 4 << 20],
        )
        .unwrap();
        let out = ws.grove(&["up", "feat"]).success();
        if running {
            assert!(out.stderr.contains("already up"), "{out}");
        }
        let after = apparent(&ws);
        assert!(
            after >= before + (4 << 20),
            "running: {running}: {before} -> {after}"
        );
    }
}
