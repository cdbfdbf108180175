//! Error types of the hook system.
//!
//! Two families, because they reach different people: a [`RegistrationError`] is for whoever
//! assembles the host (a plugin or spec does not fit and nothing was changed), a [`HookError`]
//! is for whoever calls a hook (this call failed, and which plugin made it fail).

use std::fmt;

/// Why a hook call failed, or why one implementation failed inside a call.
///
/// Errors raised by an implementation are wrapped into [`HookError::ImplFailed`] by the
/// dispatcher, so every error that leaves a call names the hook and the plugin responsible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// A free-form error raised by implementation code (see [`HookError::msg`]); the dispatcher
    /// attributes it to the plugin before it leaves the call.
    #[error("{message}")]
    Message {
        /// What went wrong, in the plugin's words.
        message: String,
    },

    /// An implementation (or a wrapper's setup or teardown) returned an error.
    #[error("hook `{hook}`: plugin `{plugin}` failed: {source}")]
    ImplFailed {
        /// The hook being called.
        hook: String,
        /// The plugin whose implementation failed.
        plugin: String,
        /// The error it returned.
        #[source]
        source: Box<HookError>,
    },

    /// An implementation panicked. The panic was caught; the host keeps running.
    #[error(
        "hook `{hook}`: plugin `{plugin}` panicked: {message} (the panic was contained; \
         report it to the plugin's author or block the plugin)"
    )]
    Panicked {
        /// The hook being called.
        hook: String,
        /// The plugin that panicked.
        plugin: String,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// The call's arguments do not match the spec's `arg_schema`.
    #[error(
        "hook `{hook}`: call arguments do not match the hook's arg_schema:\n  - {}",
        violations.join("\n  - ")
    )]
    InvalidArgs {
        /// The hook being called.
        hook: String,
        /// One line per schema violation (`/pointer: message`).
        violations: Vec<String>,
    },

    /// An implementation returned a value that does not match the spec's `result_schema`.
    #[error(
        "hook `{hook}`: plugin `{plugin}` returned a result that does not match the hook's \
         result_schema:\n  - {}",
        violations.join("\n  - ")
    )]
    InvalidResult {
        /// The hook being called.
        hook: String,
        /// The plugin that returned the bad value.
        plugin: String,
        /// One line per schema violation.
        violations: Vec<String>,
    },

    /// An implementation declared an argument name the call did not provide (pluggy's
    /// `HookCallError`).
    #[error(
        "hook `{hook}`: plugin `{plugin}` reads argument `{argname}`, which this call does not provide"
    )]
    MissingArgument {
        /// The hook being called.
        hook: String,
        /// The plugin whose implementation declared the argument.
        plugin: String,
        /// The missing argument.
        argname: String,
    },

    /// `call`/`call_extra` on a historic hook.
    #[error(
        "hook `{hook}` is historic: call it with call_historic so late registrants get the call replayed"
    )]
    HistoricCall {
        /// The hook being called.
        hook: String,
    },

    /// `call_historic` on a hook whose spec is not historic (or that has no spec).
    #[error("hook `{hook}` is not historic: declare its spec with .historic() or use call()")]
    NotHistoric {
        /// The hook being called.
        hook: String,
    },

    /// A synchronous call reached asynchronous implementations.
    #[error(
        "hook `{hook}` has async implementations (plugins: {}); call it with call_async().await",
        plugins.join(", ")
    )]
    AsyncInSyncCall {
        /// The hook being called.
        hook: String,
        /// Plugins whose implementations are async.
        plugins: Vec<String>,
    },

    /// No spec and no implementation has ever mentioned this hook.
    #[error(
        "unknown hook `{hook}`: declare it with add_hookspecs or register an implementation first"
    )]
    UnknownHook {
        /// The name that was looked up.
        hook: String,
    },

    /// Typed calls: the arguments could not be serialized to JSON.
    #[error("hook `{hook}`: cannot serialize the call arguments: {message}")]
    SerializeArgs {
        /// The hook being called.
        hook: String,
        /// The serde error.
        message: String,
    },

    /// Typed calls: a result could not be deserialized into the requested type.
    #[error(
        "hook `{hook}`: result #{index} does not deserialize into the requested type: {message}"
    )]
    DeserializeResult {
        /// The hook being called.
        hook: String,
        /// Position of the offending result in the result list.
        index: usize,
        /// The serde error.
        message: String,
    },
}

impl HookError {
    /// An error raised by implementation code. The dispatcher adds the hook and plugin names.
    pub fn msg(message: impl fmt::Display) -> Self {
        HookError::Message {
            message: message.to_string(),
        }
    }

    /// The plugin this error is attributed to, if any.
    #[must_use]
    pub fn plugin(&self) -> Option<&str> {
        match self {
            HookError::ImplFailed { plugin, .. }
            | HookError::Panicked { plugin, .. }
            | HookError::InvalidResult { plugin, .. }
            | HookError::MissingArgument { plugin, .. } => Some(plugin),
            _ => None,
        }
    }

    /// The innermost error: for [`HookError::ImplFailed`] the error the plugin returned.
    #[must_use]
    pub fn root(&self) -> &HookError {
        match self {
            HookError::ImplFailed { source, .. } => source.root(),
            other => other,
        }
    }

    /// Attribute an implementation's error to its plugin, unless it already is.
    pub(crate) fn attribute(self, hook: &str, plugin: &str) -> HookError {
        match &self {
            HookError::ImplFailed {
                hook: h, plugin: p, ..
            }
            | HookError::Panicked {
                hook: h, plugin: p, ..
            }
            | HookError::InvalidResult {
                hook: h, plugin: p, ..
            }
            | HookError::MissingArgument {
                hook: h, plugin: p, ..
            } if h == hook && p == plugin => self,
            _ => HookError::ImplFailed {
                hook: hook.to_owned(),
                plugin: plugin.to_owned(),
                source: Box::new(self),
            },
        }
    }
}

/// One reason a plugin registration or a set of specs was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationProblem {
    /// The implementation reads arguments the spec does not declare (pluggy's
    /// "Argument(s) {...} are declared in the hookimpl but can not be found in the hookspec").
    UnknownArgnames {
        /// Plugin of the implementation.
        plugin: String,
        /// Hook it implements.
        hook: String,
        /// Declared names missing from the spec.
        unknown: Vec<String>,
        /// The spec's argument names.
        spec_argnames: Vec<String>,
    },
    /// A wrapper on a historic hook: replay calls one implementation at a time, so there is
    /// nothing to wrap.
    HistoricWrapper {
        /// Plugin of the implementation.
        plugin: String,
        /// Hook it implements.
        hook: String,
    },
    /// An async implementation on a historic hook: history is replayed inside the synchronous
    /// `register`.
    HistoricAsync {
        /// Plugin of the implementation.
        plugin: String,
        /// Hook it implements.
        hook: String,
    },
    /// Both `tryfirst` and `trylast` were set.
    TryfirstAndTrylast {
        /// Plugin of the implementation.
        plugin: String,
        /// Hook it implements.
        hook: String,
    },
    /// `before`/`after` constraints form a cycle.
    OrderingCycle {
        /// Hook whose implementations cannot be ordered.
        hook: String,
        /// The plugins in the cycle, each required to run before the next; the first is repeated
        /// at the end.
        cycle: Vec<String>,
    },
    /// A spec with this name already exists (or appears twice in one batch).
    DuplicateSpec {
        /// The hook name.
        hook: String,
    },
    /// A spec that is both historic and firstresult.
    HistoricFirstresult {
        /// The hook name.
        hook: String,
    },
    /// A schema in a spec does not compile.
    BadSchema {
        /// The hook name.
        hook: String,
        /// `arg_schema` or `result_schema`.
        which: &'static str,
        /// The compiler's message.
        message: String,
    },
    /// An empty plugin or hook name.
    EmptyName {
        /// What was empty: `plugin name` or `hook name`.
        what: &'static str,
    },
}

impl fmt::Display for ValidationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationProblem::UnknownArgnames {
                plugin,
                hook,
                unknown,
                spec_argnames,
            } => write!(
                f,
                "Plugin `{plugin}` for hook `{hook}`: Argument(s) {{{}}} are declared in the hookimpl \
                 but can not be found in the hookspec (spec arguments: [{}]); rename them or drop them \
                 from the impl's argnames",
                quoted(unknown),
                quoted(spec_argnames)
            ),
            ValidationProblem::HistoricWrapper { plugin, hook } => write!(
                f,
                "Plugin `{plugin}` for hook `{hook}`: historic incompatible with wrapper; register a \
                 plain implementation instead"
            ),
            ValidationProblem::HistoricAsync { plugin, hook } => write!(
                f,
                "Plugin `{plugin}` for hook `{hook}`: historic hooks need synchronous implementations \
                 (history is replayed inside register)"
            ),
            ValidationProblem::TryfirstAndTrylast { plugin, hook } => write!(
                f,
                "Plugin `{plugin}` for hook `{hook}`: tryfirst and trylast are mutually exclusive; \
                 keep one"
            ),
            ValidationProblem::OrderingCycle { hook, cycle } => write!(
                f,
                "hook `{hook}`: before/after constraints form a cycle: {}; remove one of the \
                 constraints",
                cycle.join(" -> ")
            ),
            ValidationProblem::DuplicateSpec { hook } => {
                write!(
                    f,
                    "hook `{hook}` already has a spec; each hook is declared once"
                )
            }
            ValidationProblem::HistoricFirstresult { hook } => {
                write!(
                    f,
                    "hook `{hook}`: cannot have a historic firstresult hook; drop one flag"
                )
            }
            ValidationProblem::BadSchema {
                hook,
                which,
                message,
            } => write!(
                f,
                "hook `{hook}`: {which} is not a valid JSON Schema: {message}"
            ),
            ValidationProblem::EmptyName { what } => write!(f, "the {what} must not be empty"),
        }
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bullet_list(items: &[impl fmt::Display]) -> String {
    items
        .iter()
        .map(|p| format!("\n  - {p}"))
        .collect::<String>()
}

/// An implementation whose hook has no spec and that is not marked `optional`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingImpl {
    /// The hook name nobody declared.
    pub hook: String,
    /// The plugin that implements it.
    pub plugin: String,
}

impl fmt::Display for PendingImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown hook `{}` in plugin `{}`",
            self.hook, self.plugin
        )
    }
}

/// Why registering a plugin or adding specs was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The plugin name is taken.
    #[error(
        "plugin name `{plugin}` is already registered; unregister it first or choose another name"
    )]
    AlreadyRegistered {
        /// The name.
        plugin: String,
    },
    /// The plugin name is blocked.
    #[error("plugin name `{plugin}` is blocked; call unblock(\"{plugin}\") to allow it")]
    Blocked {
        /// The name.
        plugin: String,
    },
    /// At least one implementation of the plugin is invalid; none was registered.
    #[error(
        "plugin `{plugin}` was not registered ({} problem(s)):{}",
        problems.len(),
        bullet_list(problems)
    )]
    InvalidPlugin {
        /// The plugin name.
        plugin: String,
        /// Every problem found.
        problems: Vec<ValidationProblem>,
    },
    /// At least one spec is invalid or conflicts with registered implementations; no spec of
    /// the batch was added.
    #[error(
        "hook specs were not added ({} problem(s)):{}",
        problems.len(),
        bullet_list(problems)
    )]
    InvalidSpecs {
        /// Every problem found.
        problems: Vec<ValidationProblem>,
    },
    /// `check_pending` found implementations of undeclared hooks.
    #[error(
        "implementations of undeclared hooks:{}\ndeclare the hooks with add_hookspecs, or mark \
         the implementations optional",
        bullet_list(pending)
    )]
    Pending {
        /// Every offending implementation.
        pending: Vec<PendingImpl>,
    },
}

impl RegistrationError {
    /// The validation problems carried by this error (empty for name conflicts).
    #[must_use]
    pub fn problems(&self) -> &[ValidationProblem] {
        match self {
            RegistrationError::InvalidPlugin { problems, .. }
            | RegistrationError::InvalidSpecs { problems } => problems,
            _ => &[],
        }
    }
}
