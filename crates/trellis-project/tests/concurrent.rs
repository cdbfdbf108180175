//! Decisions made against one state are not written over another: an install or update whose
//! plugin changed while the user was deciding is refused, and what changed meanwhile stays.

use std::fs;
use std::path::{Path, PathBuf};

use trellis_project::{GrantChoices, Project, ProjectError};

fn plugin(root: &Path, dir: &str, version: &str) -> PathBuf {
    let path = root.join(dir);
    fs::create_dir_all(path.join("templates")).unwrap();
    fs::write(
        path.join("plugin.yaml"),
        format!(
            "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: sierra\n  version: {version}\n  description: test plugin\n  license: MIT\nprovides:\n  commands:\n    - name: sierra-hello\n      description: says hello\n      template: templates/hello.md\nrequires:\n  capabilities:\n    - name: network\n      reason: call home\n      hosts: [api.example.com]\n"
        ),
    )
    .unwrap();
    fs::write(
        path.join("templates/hello.md"),
        format!("hello {version}\n"),
    )
    .unwrap();
    path
}

fn project(root: &Path) -> Project {
    let user = root.join("user");
    let home = root.join("home");
    Project::open(root.join("project")).with_env(move |key| match key {
        "TRELLIS_CONFIG_DIR" => Some(user.display().to_string()),
        "HOME" => Some(home.display().to_string()),
        _ => None,
    })
}

#[test]
fn a_revoke_made_while_an_update_waits_for_decisions_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let project = project(tmp.path());
    let yes = GrantChoices {
        yes: true,
        ..GrantChoices::default()
    };
    let v1 = plugin(tmp.path(), "v1", "1.0.0");
    let prepared = project.prepare_install(&v1).unwrap();
    let decisions = prepared.plan.decide(&yes, None).unwrap();
    project.commit_install(prepared, decisions, false).unwrap();
    assert_eq!(project.grants("sierra").unwrap().granted.len(), 1);

    // The update is prepared (and would carry the network grant) ...
    let v2 = plugin(tmp.path(), "v2", "2.0.0");
    let prepared = project.prepare_install(&v2).unwrap();
    assert_eq!(prepared.plan.carried.len(), 1);
    let decisions = prepared.plan.decide(&yes, None).unwrap();
    // ... while another command revokes it.
    project.revoke_grant("sierra", "network").unwrap();

    let err = project
        .commit_install(prepared, decisions, true)
        .unwrap_err();
    assert!(
        matches!(err, ProjectError::ChangedMeanwhile { .. }),
        "{err}"
    );
    assert!(project.grants("sierra").unwrap().granted.is_empty());
    assert_eq!(
        project.state().unwrap().plugins["sierra"]
            .version
            .to_string(),
        "1.0.0"
    );

    // Asked again, the update sees the revoke and asks instead of carrying the grant.
    let prepared = project.prepare_install(&v2).unwrap();
    assert!(prepared.plan.carried.is_empty());
    assert_eq!(prepared.plan.carried_refusals.len(), 0);
    assert_eq!(prepared.plan.pending.len(), 1);
}
