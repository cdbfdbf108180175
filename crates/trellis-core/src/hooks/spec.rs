//! Hook specifications: what the host promises to call, and under which rules.

use serde_json::Value;

use super::error::ValidationProblem;

/// What a call does when an implementation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// The first error stops the call; wrappers still see it and may recover (pluggy).
    #[default]
    Stop,
    /// Every implementation runs; errors are collected in [`super::HookResults::errors`], each
    /// naming its plugin. Suits notification-style hooks where one broken plugin must not
    /// silence the others.
    Continue,
}

/// Default bound on remembered historic calls. Unbounded history is a memory leak in a
/// long-running host; 256 covers start-up style hooks with room to spare.
pub const DEFAULT_HISTORY_LIMIT: usize = 256;

/// The declaration of an extension point (pluggy's `HookspecMarker` options, plus ours).
///
/// ```
/// use trellis_core::hooks::{FailMode, HookSpec};
/// let spec = HookSpec::new("on_build")
///     .arg_schema(serde_json::json!({
///         "type": "object",
///         "properties": {"target": {"type": "string"}},
///         "required": ["target"]
///     }))
///     .fail_mode(FailMode::Continue);
/// assert_eq!(spec.name, "on_build");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HookSpec {
    /// Hook name; implementations refer to it.
    pub name: String,
    /// JSON Schema the call arguments must satisfy (compiled once, when the spec is added).
    pub arg_schema: Option<Value>,
    /// JSON Schema every non-null result must satisfy; a bad result is that plugin's error.
    pub result_schema: Option<Value>,
    /// Stop at the first non-null result and return only it.
    pub firstresult: bool,
    /// Remember calls and replay them to implementations registered later.
    pub historic: bool,
    /// What an implementation error does to the call.
    pub fail_mode: FailMode,
    /// How many historic calls are remembered (oldest dropped first).
    pub history_limit: usize,
    /// Argument names implementations may declare. Derived from `arg_schema`'s `properties`
    /// when left empty.
    pub argnames: Vec<String>,
    /// Deprecation-style warning emitted (through `tracing`) when a plugin implements the hook.
    pub warn_on_impl: Option<String>,
    /// The implementations are independent of each other: those that may run at the same
    /// time as others (each behind its own call boundary, such as a process) do, and the
    /// results still come in call order. Not for `firstresult` hooks, where order decides
    /// which implementations run at all. Under [`FailMode::Stop`] the implementations after a
    /// failing one may already have run; their results are dropped as pluggy would.
    pub concurrent: bool,
}

impl HookSpec {
    /// A spec with pluggy's defaults: not firstresult, not historic, stop on error.
    pub fn new(name: impl Into<String>) -> Self {
        HookSpec {
            name: name.into(),
            arg_schema: None,
            result_schema: None,
            firstresult: false,
            historic: false,
            fail_mode: FailMode::Stop,
            history_limit: DEFAULT_HISTORY_LIMIT,
            argnames: Vec::new(),
            warn_on_impl: None,
            concurrent: false,
        }
    }

    /// Set the argument schema.
    #[must_use]
    pub fn arg_schema(mut self, schema: Value) -> Self {
        self.arg_schema = Some(schema);
        self
    }

    /// Set the result schema.
    #[must_use]
    pub fn result_schema(mut self, schema: Value) -> Self {
        self.result_schema = Some(schema);
        self
    }

    /// Let independent implementations run concurrently (see [`HookSpec::concurrent`]).
    #[must_use]
    pub fn concurrent(mut self) -> Self {
        self.concurrent = true;
        self
    }

    /// Make the hook return only the first non-null result.
    #[must_use]
    pub fn firstresult(mut self) -> Self {
        self.firstresult = true;
        self
    }

    /// Make the hook historic.
    #[must_use]
    pub fn historic(mut self) -> Self {
        self.historic = true;
        self
    }

    /// Choose what an implementation error does.
    #[must_use]
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Bound the remembered historic calls.
    #[must_use]
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }

    /// Declare the argument names explicitly.
    #[must_use]
    pub fn argnames<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argnames = names.into_iter().map(Into::into).collect();
        self
    }

    /// Warn plugin authors who implement this hook.
    #[must_use]
    pub fn warn_on_impl(mut self, warning: impl Into<String>) -> Self {
        self.warn_on_impl = Some(warning.into());
        self
    }
}

/// A spec whose schemas are compiled: compiling per call would cost more than the dispatch.
pub(crate) struct CompiledSpec {
    pub(crate) spec: HookSpec,
    pub(crate) args: Option<jsonschema::Validator>,
    pub(crate) result: Option<jsonschema::Validator>,
}

impl CompiledSpec {
    pub(crate) fn compile(mut spec: HookSpec) -> Result<CompiledSpec, Vec<ValidationProblem>> {
        let mut problems = Vec::new();
        if spec.name.is_empty() {
            problems.push(ValidationProblem::EmptyName { what: "hook name" });
        }
        if spec.historic && spec.firstresult {
            problems.push(ValidationProblem::HistoricFirstresult {
                hook: spec.name.clone(),
            });
        }
        let mut compile = |schema: &Option<Value>, which: &'static str| {
            let schema = schema.as_ref()?;
            match jsonschema::validator_for(schema) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.push(ValidationProblem::BadSchema {
                        hook: spec.name.clone(),
                        which,
                        message: e.to_string(),
                    });
                    None
                }
            }
        };
        let args = compile(&spec.arg_schema, "arg_schema");
        let result = compile(&spec.result_schema, "result_schema");
        if !problems.is_empty() {
            return Err(problems);
        }
        if spec.argnames.is_empty()
            && let Some(props) = spec
                .arg_schema
                .as_ref()
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
        {
            spec.argnames = props.keys().cloned().collect();
        }
        Ok(CompiledSpec { spec, args, result })
    }
}

/// Schema violations as `/pointer: message` lines, for error messages.
pub(crate) fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect()
}
