//! Policies read from real files in temporary directories, found the way the CLI finds them.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use trellis_policy::{PluginFacts, Policy, PolicyError, PolicyFile, PolicyScope, Violation};
use trellis_trust::TrustLevel;

const CERTIFIER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti certifier@company.com";

const BOTH: [PolicyScope; 2] = [PolicyScope::Admin, PolicyScope::Project];

/// A project directory with its `.trellis/`, and an admin file kept outside it.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".trellis")).unwrap();
        Setup { dir }
    }

    fn trellis_dir(&self) -> PathBuf {
        self.dir.path().join(".trellis")
    }

    fn admin_path(&self) -> PathBuf {
        self.dir.path().join("etc-trellis-policy.yaml")
    }

    fn project_path(&self) -> PathBuf {
        self.trellis_dir().join("policy.yaml")
    }

    fn path(&self, scope: PolicyScope) -> PathBuf {
        match scope {
            PolicyScope::Admin => self.admin_path(),
            PolicyScope::Project => self.project_path(),
        }
    }

    fn write(&self, scope: PolicyScope, text: &str) -> &Setup {
        std::fs::write(self.path(scope), text).unwrap();
        self
    }

    /// Discovers the policy with `TRELLIS_POLICY` naming the admin file when it was written.
    fn discover(&self) -> Result<Policy, PolicyError> {
        let admin = self.admin_path();
        let env = move |key: &str| {
            (key == "TRELLIS_POLICY" && admin.exists())
                .then(|| admin.to_string_lossy().into_owned())
        };
        Policy::discover(&self.trellis_dir(), &env)
    }

    fn policy(&self) -> Policy {
        self.discover().unwrap()
    }
}

/// One policy file written for `scope` and discovered.
fn single(scope: PolicyScope, text: &str) -> (Setup, Policy) {
    let setup = Setup::new();
    setup.write(scope, text);
    let policy = setup.policy();
    assert_eq!(policy.files().len(), 1);
    assert_eq!(policy.files()[0].scope, scope);
    (setup, policy)
}

/// A certified plugin from a trusted signer asking for nothing: what no rule refuses.
fn facts<'a>(name: &'a str) -> PluginFacts<'a> {
    PluginFacts {
        name,
        trust: TrustLevel::Certified,
        signer: Some("security-team@company.com"),
        capabilities: &[],
        registry: None,
    }
}

fn rules_of(violations: &[Violation]) -> Vec<(&str, PolicyScope)> {
    violations
        .iter()
        .map(|v| (v.rule.as_str(), v.scope))
        .collect()
}

fn invalid(scope: PolicyScope, text: &str) -> (Setup, PolicyError) {
    let setup = Setup::new();
    setup.write(scope, text);
    let err = setup.discover().unwrap_err();
    (setup, err)
}

fn only_diagnostic(err: &PolicyError) -> &trellis_manifest::Diagnostic {
    let diagnostics = err.diagnostics();
    assert_eq!(diagnostics.len(), 1, "{err}");
    &diagnostics[0]
}

// ---------------------------------------------------------------------------------------------
// Each field refuses what it should, from either file.

#[test]
fn trust_minimum_level_refuses_lower_levels() {
    for scope in BOTH {
        let (setup, policy) = single(
            scope,
            "plugin_policy:\n  trust:\n    minimum_level: verified\n",
        );
        assert_eq!(policy.minimum_trust(), TrustLevel::Verified);

        let self_signed = PluginFacts {
            trust: TrustLevel::SelfSigned,
            signer: None,
            ..facts("x")
        };
        let violations = policy.check_plugin(&self_signed);
        assert_eq!(rules_of(&violations), [("trust.minimum_level", scope)]);
        let v = &violations[0];
        assert_eq!(v.file, setup.path(scope));
        assert_eq!(
            v.message,
            "plugin x is self-signed, the policy requires verified or higher"
        );
        let shown = v.to_string();
        assert!(
            shown.starts_with(&format!(
                "refused by trust.minimum_level in {} ({scope} policy): plugin x is self-signed",
                setup.path(scope).display()
            )),
            "{shown}"
        );
        assert!(shown.contains("hint: "), "{shown}");

        for ok in [TrustLevel::Verified, TrustLevel::Certified] {
            let facts = PluginFacts {
                trust: ok,
                ..facts("x")
            };
            assert_eq!(policy.check_plugin(&facts), []);
        }
    }
}

#[test]
fn trust_allowed_signers_refuse_other_and_missing_signers() {
    let text = "plugin_policy:\n  trust:\n    allowed_signers:\n      - security-team@company.com\n      - \"*@vendor.example\"\n";
    for scope in BOTH {
        let (_setup, policy) = single(scope, text);
        for signer in ["security-team@company.com", "dev@vendor.example"] {
            let ok = PluginFacts {
                signer: Some(signer),
                ..facts("x")
            };
            assert_eq!(policy.check_plugin(&ok), [], "{signer}");
        }

        let stranger = PluginFacts {
            signer: Some("mallory@vendor.example.evil"),
            ..facts("x")
        };
        let violations = policy.check_plugin(&stranger);
        assert_eq!(rules_of(&violations), [("trust.allowed_signers", scope)]);
        assert!(
            violations[0]
                .message
                .contains("mallory@vendor.example.evil")
        );

        let unsigned = PluginFacts {
            trust: TrustLevel::Unsigned,
            signer: None,
            ..facts("x")
        };
        let violations = policy.check_plugin(&unsigned);
        assert_eq!(rules_of(&violations), [("trust.allowed_signers", scope)]);
        assert!(
            violations[0].message.contains("is unsigned"),
            "{}",
            violations[0]
        );

        let self_signed = PluginFacts {
            trust: TrustLevel::SelfSigned,
            signer: None,
            ..facts("x")
        };
        let violations = policy.check_plugin(&self_signed);
        assert_eq!(rules_of(&violations), [("trust.allowed_signers", scope)]);
        assert!(violations[0].message.contains("no verified signer"));
    }
}

#[test]
fn trust_certifiers_are_handed_out_with_their_file() {
    let text = format!("plugin_policy:\n  trust:\n    certifiers:\n      - \"{CERTIFIER}\"\n");
    for scope in BOTH {
        let (setup, policy) = single(scope, &text);
        assert_eq!(
            policy.certifiers(),
            [(CERTIFIER.to_owned(), setup.path(scope))]
        );
    }
}

#[test]
fn blocked_capabilities_refuse_plugins_requesting_them() {
    for scope in BOTH {
        let (setup, policy) = single(
            scope,
            "plugin_policy:\n  capabilities:\n    blocked: [subprocess]\n",
        );
        let capabilities = ["network".to_owned(), "subprocess".to_owned()];
        let asking = PluginFacts {
            capabilities: &capabilities,
            ..facts("runner")
        };
        let violations = policy.check_plugin(&asking);
        assert_eq!(rules_of(&violations), [("capabilities.blocked", scope)]);
        assert!(violations[0].message.contains("`subprocess`"));
        assert!(violations[0].message.contains("runner"));

        let blocked = policy.blocked_capability("subprocess").unwrap();
        assert_eq!(blocked.file, setup.path(scope));
        assert_eq!(blocked.scope, scope);
        assert_eq!(policy.blocked_capability("network"), None);

        let harmless = ["network".to_owned()];
        let not_asking = PluginFacts {
            capabilities: &harmless,
            ..facts("runner")
        };
        assert_eq!(policy.check_plugin(&not_asking), []);
    }
}

#[test]
fn require_approval_names_the_file_that_requires_it() {
    for scope in BOTH {
        let (setup, policy) = single(
            scope,
            "plugin_policy:\n  capabilities:\n    require_approval: [network]\n",
        );
        assert_eq!(
            policy.approval_required("network"),
            Some((scope, setup.path(scope)))
        );
        assert!(policy.approval_required("state").is_none());
        // Requiring approval is not a refusal.
        let capabilities = ["network".to_owned()];
        let asking = PluginFacts {
            capabilities: &capabilities,
            ..facts("x")
        };
        assert_eq!(policy.check_plugin(&asking), []);
    }
}

#[test]
fn registries_allowed_refuses_other_registries() {
    let text = "plugin_policy:\n  registries:\n    allowed: [\"https://plugins.company.com/*\"]\n";
    for scope in BOTH {
        let (_setup, policy) = single(scope, text);
        assert_eq!(
            policy.check_registry("https://plugins.company.com/team"),
            []
        );
        assert_eq!(policy.check_registry("https://plugins.company.com"), []);

        let violations = policy.check_registry("https://registry.example.org");
        assert_eq!(rules_of(&violations), [("registries.allowed", scope)]);
        assert!(
            violations[0]
                .message
                .contains("https://registry.example.org")
        );

        let from_elsewhere = PluginFacts {
            registry: Some("https://plugins.company.com.evil.org/"),
            ..facts("x")
        };
        assert_eq!(
            rules_of(&policy.check_plugin(&from_elsewhere)),
            [("registries.allowed", scope)]
        );
        // A plugin installed from a directory has no registry to refuse.
        assert_eq!(policy.check_plugin(&facts("x")), []);
    }
}

#[test]
fn registries_blocked_refuses_matching_registries() {
    let text = "plugin_policy:\n  registries:\n    blocked: [\"https://*.example.org/*\"]\n";
    for scope in BOTH {
        let (_setup, policy) = single(scope, text);
        let violations = policy.check_registry("https://registry.example.org/index");
        assert_eq!(rules_of(&violations), [("registries.blocked", scope)]);
        assert!(violations[0].message.contains("`https://*.example.org/*`"));
        assert_eq!(policy.check_registry("https://plugins.company.com/"), []);
    }
}

#[test]
fn plugins_allowed_refuses_unlisted_plugins() {
    let text = "plugin_policy:\n  plugins:\n    allowed: [security-scanner, \"jira-*\"]\n";
    for scope in BOTH {
        let (_setup, policy) = single(scope, text);
        assert_eq!(policy.check_plugin(&facts("security-scanner")), []);
        assert_eq!(policy.check_plugin(&facts("jira-sync")), []);
        let violations = policy.check_plugin(&facts("slack-bot"));
        assert_eq!(rules_of(&violations), [("plugins.allowed", scope)]);
        assert_eq!(
            violations[0].message,
            "plugin slack-bot is not in the allowed list (`security-scanner`, `jira-*`)"
        );
    }
}

#[test]
fn plugins_blocked_refuses_matching_plugins() {
    for scope in BOTH {
        let (_setup, policy) = single(
            scope,
            "plugin_policy:\n  plugins:\n    blocked: [\"experimental-*\"]\n",
        );
        let violations = policy.check_plugin(&facts("experimental-ai"));
        assert_eq!(rules_of(&violations), [("plugins.blocked", scope)]);
        assert_eq!(policy.check_plugin(&facts("stable-ai")), []);
    }
}

#[test]
fn limits_cap_memory_and_timeout() {
    for scope in BOTH {
        let (setup, policy) = single(
            scope,
            "plugin_policy:\n  limits:\n    memory: 256MiB\n    timeout: 30s\n",
        );
        let caps = policy.limit_caps();
        assert_eq!(caps.memory, Some((256 << 20, setup.path(scope))));
        assert_eq!(
            caps.timeout,
            Some((Duration::from_secs(30), setup.path(scope)))
        );
    }
}

#[test]
fn bare_numbers_are_bytes_and_milliseconds_as_in_a_manifest() {
    let (_setup, policy) = single(
        PolicyScope::Project,
        "plugin_policy:\n  limits:\n    memory: 1048576\n    timeout: 1500\n",
    );
    let caps = policy.limit_caps();
    assert_eq!(caps.memory.map(|(bytes, _)| bytes), Some(1 << 20));
    assert_eq!(
        caps.timeout.map(|(timeout, _)| timeout),
        Some(Duration::from_millis(1500))
    );
}

// ---------------------------------------------------------------------------------------------
// Two files: the stricter wins.

#[test]
fn the_higher_minimum_trust_wins() {
    let setup = Setup::new();
    setup
        .write(
            PolicyScope::Admin,
            "plugin_policy:\n  trust:\n    minimum_level: verified\n",
        )
        .write(
            PolicyScope::Project,
            "plugin_policy:\n  trust:\n    minimum_level: self-signed\n",
        );
    let policy = setup.policy();
    assert_eq!(policy.minimum_trust(), TrustLevel::Verified);

    let self_signed = PluginFacts {
        trust: TrustLevel::SelfSigned,
        signer: None,
        ..facts("x")
    };
    let violations = policy.check_plugin(&self_signed);
    assert_eq!(
        rules_of(&violations),
        [("trust.minimum_level", PolicyScope::Admin)]
    );
    assert_eq!(violations[0].file, setup.admin_path());

    let unsigned = PluginFacts {
        trust: TrustLevel::Unsigned,
        signer: None,
        ..facts("x")
    };
    assert_eq!(
        rules_of(&policy.check_plugin(&unsigned)),
        [
            ("trust.minimum_level", PolicyScope::Admin),
            ("trust.minimum_level", PolicyScope::Project)
        ]
    );
}

#[test]
fn the_smallest_limit_cap_wins() {
    let setup = Setup::new();
    setup
        .write(
            PolicyScope::Admin,
            "plugin_policy:\n  limits:\n    memory: 512MiB\n    timeout: 10s\n",
        )
        .write(
            PolicyScope::Project,
            "plugin_policy:\n  limits:\n    memory: 128MiB\n    timeout: 1m\n",
        );
    let caps = setup.policy().limit_caps();
    assert_eq!(caps.memory, Some((128 << 20, setup.project_path())));
    assert_eq!(
        caps.timeout,
        Some((Duration::from_secs(10), setup.admin_path()))
    );
}

#[test]
fn allowed_lists_of_two_files_intersect() {
    let setup = Setup::new();
    setup
        .write(
            PolicyScope::Admin,
            "plugin_policy:\n  plugins:\n    allowed: [a, b]\n",
        )
        .write(
            PolicyScope::Project,
            "plugin_policy:\n  plugins:\n    allowed: [b, c]\n",
        );
    let policy = setup.policy();
    assert_eq!(policy.check_plugin(&facts("b")), []);
    assert_eq!(
        rules_of(&policy.check_plugin(&facts("a"))),
        [("plugins.allowed", PolicyScope::Project)]
    );
    assert_eq!(
        rules_of(&policy.check_plugin(&facts("c"))),
        [("plugins.allowed", PolicyScope::Admin)]
    );
    assert_eq!(
        rules_of(&policy.check_plugin(&facts("d"))),
        [
            ("plugins.allowed", PolicyScope::Admin),
            ("plugins.allowed", PolicyScope::Project)
        ]
    );
}

#[test]
fn every_refusal_of_every_file_is_reported() {
    let setup = Setup::new();
    setup
        .write(
            PolicyScope::Admin,
            "plugin_policy:\n  capabilities:\n    blocked: [subprocess, network]\n  plugins:\n    blocked: [\"x*\"]\n",
        )
        .write(
            PolicyScope::Project,
            "plugin_policy:\n  trust:\n    minimum_level: certified\n  registries:\n    blocked: [\"*\"]\n",
        );
    let capabilities = ["subprocess".to_owned(), "network".to_owned()];
    let facts = PluginFacts {
        trust: TrustLevel::Verified,
        capabilities: &capabilities,
        registry: Some("https://r.example"),
        ..facts("xyz")
    };
    assert_eq!(
        rules_of(&setup.policy().check_plugin(&facts)),
        [
            ("capabilities.blocked", PolicyScope::Admin),
            ("capabilities.blocked", PolicyScope::Admin),
            ("plugins.blocked", PolicyScope::Admin),
            ("trust.minimum_level", PolicyScope::Project),
            ("registries.blocked", PolicyScope::Project),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Allowed overrides blocked, but only within one file.

#[test]
fn an_allowed_match_overrides_a_blocked_match_in_the_same_file() {
    let (_setup, policy) = single(
        PolicyScope::Admin,
        "plugin_policy:\n  plugins:\n    allowed: [security-scanner]\n    blocked: [\"*\"]\n  registries:\n    allowed: [\"https://plugins.company.com/*\"]\n    blocked: [\"*\"]\n",
    );
    assert_eq!(policy.check_plugin(&facts("security-scanner")), []);
    assert_eq!(policy.check_registry("https://plugins.company.com/x"), []);
    assert_eq!(
        rules_of(&policy.check_plugin(&facts("other"))),
        [("plugins.allowed", PolicyScope::Admin)]
    );
    assert_eq!(
        rules_of(&policy.check_registry("https://elsewhere.example/")),
        [("registries.allowed", PolicyScope::Admin)]
    );
}

#[test]
fn a_project_cannot_allow_what_the_admin_blocks() {
    let setup = Setup::new();
    setup
        .write(
            PolicyScope::Admin,
            "plugin_policy:\n  plugins:\n    blocked: [\"experimental-*\"]\n",
        )
        .write(
            PolicyScope::Project,
            "plugin_policy:\n  plugins:\n    allowed: [\"experimental-ai\"]\n",
        );
    assert_eq!(
        rules_of(&setup.policy().check_plugin(&facts("experimental-ai"))),
        [("plugins.blocked", PolicyScope::Admin)]
    );
}

// ---------------------------------------------------------------------------------------------
// Parse errors name the file, line and field.

#[test]
fn an_unknown_key_is_an_error_with_a_suggestion() {
    for scope in BOTH {
        let (setup, err) = invalid(
            scope,
            "plugin_policy:\n  trust:\n    minimum_levl: verified\n",
        );
        assert!(matches!(&err, PolicyError::Invalid { scope: s, .. } if *s == scope));
        let d = only_diagnostic(&err);
        assert_eq!(d.file, setup.path(scope));
        assert_eq!((d.line, d.column), (3, 5));
        assert_eq!(d.field, "plugin_policy.trust.minimum_levl");
        assert_eq!(d.message, "unknown key `minimum_levl`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `minimum_level`?"));
        let shown = err.to_string();
        assert!(
            shown.contains(&format!(
                "{}:3:5: plugin_policy.trust.minimum_levl: unknown key",
                setup.path(scope).display()
            )),
            "{shown}"
        );
    }
}

#[test]
fn a_section_outside_plugin_policy_is_explained() {
    let (_setup, err) = invalid(PolicyScope::Project, "trust:\n  minimum_level: verified\n");
    let d = only_diagnostic(&err);
    assert_eq!(d.field, "trust");
    assert!(
        d.hint
            .as_deref()
            .unwrap()
            .contains("go under `plugin_policy:`")
    );
}

#[test]
fn a_bad_trust_level_is_an_error() {
    let (setup, err) = invalid(
        PolicyScope::Admin,
        "plugin_policy:\n  trust:\n    minimum_level: self_signed\n",
    );
    let d = only_diagnostic(&err);
    assert_eq!(d.file, setup.admin_path());
    assert_eq!(
        (d.line, d.field.as_str()),
        (3, "plugin_policy.trust.minimum_level")
    );
    assert_eq!(d.message, "`self_signed` is not a trust level");
    assert_eq!(d.hint.as_deref(), Some("did you mean `self-signed`?"));
}

#[test]
fn an_unknown_capability_is_an_error_with_a_suggestion() {
    let (setup, err) = invalid(
        PolicyScope::Project,
        "plugin_policy:\n  capabilities:\n    blocked: [subprocess]\n    require_approval:\n      - netwrk\n",
    );
    let d = only_diagnostic(&err);
    assert_eq!(d.file, setup.project_path());
    assert_eq!(d.line, 5);
    assert_eq!(d.field, "plugin_policy.capabilities.require_approval[0]");
    assert_eq!(d.message, "unknown capability `netwrk`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `network`?"));
}

#[test]
fn a_bad_size_or_duration_is_an_error() {
    let (setup, err) = invalid(
        PolicyScope::Admin,
        "plugin_policy:\n  limits:\n    memory: 256 parsecs\n    timeout: \"30\"\n",
    );
    let diagnostics = err.diagnostics();
    assert_eq!(diagnostics.len(), 2, "{err}");
    assert!(diagnostics.iter().all(|d| d.file == setup.admin_path()));
    assert_eq!(diagnostics[0].field, "plugin_policy.limits.memory");
    assert_eq!(diagnostics[0].line, 3);
    assert!(
        diagnostics[0]
            .message
            .contains("unknown size unit `parsecs`")
    );
    assert_eq!(diagnostics[1].field, "plugin_policy.limits.timeout");
    assert_eq!(diagnostics[1].line, 4);
    assert!(diagnostics[1].message.contains("has no unit"));
}

#[test]
fn a_certifier_that_is_not_an_openssh_public_key_is_an_error() {
    let (setup, err) = invalid(
        PolicyScope::Admin,
        &format!(
            "plugin_policy:\n  trust:\n    certifiers:\n      - \"{CERTIFIER}\"\n      - \"ssh-ed25519 not-base64 someone\"\n"
        ),
    );
    let d = only_diagnostic(&err);
    assert_eq!(d.file, setup.admin_path());
    assert_eq!(d.line, 5);
    assert_eq!(d.field, "plugin_policy.trust.certifiers[1]");
    assert!(
        d.message.starts_with("not an OpenSSH public key"),
        "{}",
        d.message
    );
}

#[test]
fn every_problem_is_reported_at_once_in_text_order() {
    let (_setup, err) = invalid(
        PolicyScope::Project,
        "plugin_policy:\n  plugins:\n    allow: [x]\n  capabilities:\n    blocked: [exec]\n  limits:\n    timeout: soon\n",
    );
    let fields: Vec<&str> = err.diagnostics().iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "plugin_policy.plugins.allow",
            "plugin_policy.capabilities.blocked[0]",
            "plugin_policy.limits.timeout"
        ]
    );
    assert!(err.to_string().contains("(3 problems)"));
}

#[test]
fn a_single_value_where_a_list_belongs_is_an_error() {
    let (_setup, err) = invalid(
        PolicyScope::Project,
        "plugin_policy:\n  plugins:\n    blocked: experimental-*\n",
    );
    let d = only_diagnostic(&err);
    assert_eq!(d.field, "plugin_policy.plugins.blocked");
    assert_eq!(
        d.hint.as_deref(),
        Some("write a list even for one entry: `[experimental-*]`")
    );
}

#[test]
fn yaml_syntax_errors_and_duplicate_keys_name_the_line() {
    let (setup, err) = invalid(
        PolicyScope::Project,
        "plugin_policy:\n  plugins:\n    blocked: [a\n",
    );
    let d = only_diagnostic(&err);
    assert_eq!(d.file, setup.project_path());
    assert!(d.message.starts_with("YAML syntax error"), "{}", d.message);

    let (_setup, err) = invalid(
        PolicyScope::Project,
        "plugin_policy:\n  plugins:\n    blocked: [a]\n  plugins:\n    allowed: [b]\n",
    );
    let d = only_diagnostic(&err);
    assert_eq!(d.line, 4);
    assert_eq!(d.message, "duplicate key `plugins` (first at line 2)");
}

#[test]
fn trellis_policy_naming_a_missing_file_is_an_error() {
    let setup = Setup::new();
    let missing = setup.dir.path().join("nowhere.yaml");
    let named = missing.to_string_lossy().into_owned();
    let env = move |key: &str| (key == "TRELLIS_POLICY").then(|| named.clone());
    let err = Policy::discover(&setup.trellis_dir(), &env).unwrap_err();
    assert!(matches!(&err, PolicyError::AdminPolicyMissing { path } if *path == missing));
    assert!(err.to_string().contains("TRELLIS_POLICY points at"));
}

#[test]
fn an_unreadable_policy_is_an_error_not_an_absence() {
    let setup = Setup::new();
    // A directory where the file should be cannot be read as one.
    std::fs::create_dir(setup.project_path()).unwrap();
    let err = setup.discover().unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::Io {
                scope: PolicyScope::Project,
                ..
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Nothing in force, nothing refused.

#[test]
fn without_policy_files_nothing_is_refused() {
    let setup = Setup::new();
    let policy = setup.policy();
    assert!(policy.is_empty());
    let capabilities = ["subprocess".to_owned()];
    let anything = PluginFacts {
        name: "anything",
        trust: TrustLevel::Unsigned,
        signer: None,
        capabilities: &capabilities,
        registry: Some("https://anywhere.example"),
    };
    assert_eq!(policy.check_plugin(&anything), []);
    assert_eq!(policy.check_registry("https://anywhere.example"), []);
    assert_eq!(policy.minimum_trust(), TrustLevel::Unsigned);
    assert_eq!(policy.limit_caps(), Default::default());
    assert!(policy.certifiers().is_empty());
    assert!(policy.approval_required("network").is_none());
}

#[test]
fn empty_files_and_sections_restrict_nothing() {
    for text in [
        "",
        "# nothing yet\n",
        "plugin_policy:\n",
        "plugin_policy:\n  trust:\n  plugins: {}\n  limits:\n",
    ] {
        let (_setup, policy) = single(PolicyScope::Project, text);
        let unsigned = PluginFacts {
            trust: TrustLevel::Unsigned,
            signer: None,
            ..facts("x")
        };
        assert_eq!(policy.check_plugin(&unsigned), [], "{text:?}");
        assert_eq!(policy.files()[0].rules, Default::default(), "{text:?}");
    }
}

#[test]
fn the_project_file_named_by_trellis_policy_counts_once() {
    let setup = Setup::new();
    setup.write(
        PolicyScope::Project,
        "plugin_policy:\n  plugins:\n    blocked: [x]\n",
    );
    let project = setup.project_path();
    let named = project.to_string_lossy().into_owned();
    let env = move |key: &str| (key == "TRELLIS_POLICY").then(|| named.clone());
    let policy = Policy::discover(&setup.trellis_dir(), &env).unwrap();
    assert_eq!(
        rules_of(&policy.check_plugin(&facts("x"))),
        [("plugins.blocked", PolicyScope::Admin)]
    );
}

#[test]
fn from_files_keeps_what_load_read() {
    let setup = Setup::new();
    setup.write(
        PolicyScope::Admin,
        "plugin_policy:\n  plugins:\n    blocked: [x]\n",
    );
    let file = PolicyFile::load(&setup.admin_path(), PolicyScope::Admin).unwrap();
    assert_eq!(file.rules.plugins.blocked, ["x"]);
    let policy = Policy::from_files(vec![file.clone()]);
    assert_eq!(policy.files(), [file]);
    assert_eq!(policy.check_plugin(&facts("x"))[0].file, setup.admin_path());
}

/// Certifiers raise trust: with an admin policy present, a project cannot name its own.
#[test]
fn project_certifiers_do_not_count_when_an_admin_policy_exists() {
    let setup = Setup::new();
    let text = format!("plugin_policy:\n  trust:\n    certifiers:\n      - \"{CERTIFIER}\"\n");
    setup.write(PolicyScope::Project, &text);
    assert_eq!(
        setup.policy().certifiers().len(),
        1,
        "alone, the project's count"
    );
    setup.write(
        PolicyScope::Admin,
        "plugin_policy:\n  trust:\n    minimum_level: certified\n",
    );
    assert!(setup.policy().certifiers().is_empty());
    setup.write(PolicyScope::Admin, &text);
    let certifiers = setup.policy().certifiers();
    assert_eq!(certifiers.len(), 1);
    assert_eq!(certifiers[0].1, setup.admin_path());
}
