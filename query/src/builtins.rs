//! Session functions PostgreSQL clients call: `version()`, `current_database()`,
//! `current_schema()`, `current_schemas(bool)`, `current_user`, `session_user`,
//! `current_setting(name [, missing_ok])`, `set_config(name, value, is_local)` and
//! `pg_backend_pid()`; and the rewrite that lets queries spell them as PostgreSQL does
//! (`pg_catalog.version()`, a bare `current_user`).
//!
//! The functions read the session's settings and identity through a [`SessionInfo`]
//! shared with the session, so `SET` and `set_config` see the same values.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, ListArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::sql::sqlparser::ast;
use parking_lot::Mutex;

use crate::error::{Error, SqlState};

/// The version string `version()` returns and the `server_version` it starts with.
pub const SERVER_VERSION: &str = "15.0";

/// A session's identity and settings, shared with its functions.
#[derive(Debug, Default)]
pub struct SessionInfo {
    /// Setting name (lower case) to value.
    pub settings: Mutex<BTreeMap<String, String>>,
    /// Defaults for `RESET`: the values at session start.
    pub defaults: Mutex<BTreeMap<String, String>>,
    /// The user the client connected as.
    pub user: Mutex<String>,
    /// The database the client asked for.
    pub database: Mutex<String>,
    /// The backend process id reported to the client.
    pub pid: Mutex<i32>,
}

impl SessionInfo {
    /// A setting's value.
    pub fn get(&self, name: &str) -> Option<String> {
        self.settings.lock().get(&name.to_lowercase()).cloned()
    }

    /// Change a setting.
    pub fn set(&self, name: &str, value: String) {
        self.settings.lock().insert(name.to_lowercase(), value);
    }

    /// Back to the session-start value (or gone, for a setting that had none).
    pub fn reset(&self, name: &str) {
        let name = name.to_lowercase();
        match self.defaults.lock().get(&name) {
            Some(v) => self.settings.lock().insert(name, v.clone()),
            None => self.settings.lock().remove(&name),
        };
    }

    /// Every setting back to its session-start value.
    pub fn reset_all(&self) {
        *self.settings.lock() = self.defaults.lock().clone();
    }

    fn search_path(&self) -> Vec<String> {
        let path = self.get("search_path").unwrap_or_default();
        let user = self.user.lock().clone();
        path.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .map(|s| if s == "$user" { user.clone() } else { s })
            .filter(|s| s == "public" || s == "pg_catalog")
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Version,
    CurrentDatabase,
    CurrentSchema,
    CurrentSchemas,
    CurrentUser,
    SessionUser,
    CurrentSetting,
    SetConfig,
    BackendPid,
}

#[derive(Debug)]
struct SessionFn {
    kind: Kind,
    signature: Signature,
    info: Arc<SessionInfo>,
}

impl PartialEq for SessionFn {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.info, &other.info)
    }
}
impl Eq for SessionFn {}
impl Hash for SessionFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

fn to_df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn arg(args: &[ColumnarValue], i: usize, row: usize) -> DfResult<ScalarValue> {
    match &args[i] {
        ColumnarValue::Scalar(s) => Ok(s.clone()),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row),
    }
}

fn text_arg(args: &[ColumnarValue], i: usize, row: usize) -> DfResult<Option<String>> {
    Ok(match arg(args, i, row)?.cast_to(&DataType::Utf8)? {
        ScalarValue::Utf8(s) => s,
        _ => None,
    })
}

fn bool_arg(args: &[ColumnarValue], i: usize, row: usize) -> DfResult<bool> {
    Ok(matches!(
        arg(args, i, row)?.cast_to(&DataType::Boolean)?,
        ScalarValue::Boolean(Some(true))
    ))
}

impl SessionFn {
    fn text_row(&self, args: &[ColumnarValue], row: usize) -> DfResult<Option<String>> {
        Ok(match self.kind {
            Kind::Version => Some(format!(
                "PostgreSQL {SERVER_VERSION} (tessera {}) on x86_64-pc-linux-gnu, a distributed SQL database",
                env!("CARGO_PKG_VERSION")
            )),
            Kind::CurrentDatabase => Some(self.info.database.lock().clone()),
            Kind::CurrentSchema => self.info.search_path().into_iter().next(),
            Kind::CurrentUser | Kind::SessionUser => Some(self.info.user.lock().clone()),
            Kind::CurrentSetting => {
                let Some(name) = text_arg(args, 0, row)? else {
                    return Ok(None);
                };
                let missing_ok = args.len() > 1 && bool_arg(args, 1, row)?;
                match self.info.get(&name) {
                    Some(v) => Some(v),
                    None if missing_ok => None,
                    None => {
                        return Err(to_df(Error::new(
                            SqlState::UndefinedObject,
                            format!("unrecognized configuration parameter \"{name}\""),
                        )))
                    }
                }
            }
            Kind::SetConfig => {
                let Some(name) = text_arg(args, 0, row)? else {
                    return Err(to_df(Error::new(
                        SqlState::InvalidParameterValue,
                        "SET requires parameter name",
                    )));
                };
                let value = text_arg(args, 1, row)?.unwrap_or_default();
                self.info.set(&name, value.clone());
                Some(value)
            }
            Kind::CurrentSchemas | Kind::BackendPid => None,
        })
    }
}

impl ScalarUDFImpl for SessionFn {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Version => "version",
            Kind::CurrentDatabase => "current_database",
            Kind::CurrentSchema => "current_schema",
            Kind::CurrentSchemas => "current_schemas",
            Kind::CurrentUser => "current_user",
            Kind::SessionUser => "session_user",
            Kind::CurrentSetting => "current_setting",
            Kind::SetConfig => "set_config",
            Kind::BackendPid => "pg_backend_pid",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            Kind::CurrentSchemas => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
            Kind::BackendPid => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let array: ArrayRef = match self.kind {
            Kind::BackendPid => Arc::new(Int32Array::from(vec![*self.info.pid.lock(); n])),
            Kind::CurrentSchemas => {
                let mut lists = Vec::with_capacity(n);
                for row in 0..n {
                    let mut path = self.info.search_path();
                    if bool_arg(&args.args, 0, row)? && !path.iter().any(|s| s == "pg_catalog") {
                        path.insert(0, "pg_catalog".into());
                    }
                    lists.push(Some(path.into_iter().map(Some).collect::<Vec<_>>()));
                }
                Arc::new(ListArray::from_iter_primitive_strings(lists))
            }
            _ => {
                let values = (0..n)
                    .map(|row| self.text_row(&args.args, row))
                    .collect::<DfResult<Vec<_>>>()?;
                Arc::new(StringArray::from(values))
            }
        };
        Ok(ColumnarValue::Array(array))
    }
}

trait StringLists {
    fn from_iter_primitive_strings(lists: Vec<Option<Vec<Option<String>>>>) -> ListArray;
}

impl StringLists for ListArray {
    fn from_iter_primitive_strings(lists: Vec<Option<Vec<Option<String>>>>) -> ListArray {
        use datafusion::arrow::array::{ListBuilder, StringBuilder};
        let mut b = ListBuilder::new(StringBuilder::new());
        for l in lists {
            match l {
                Some(items) => {
                    for i in items {
                        b.values().append_option(i);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        b.finish()
    }
}

/// The session functions bound to one session.
pub fn functions(info: Arc<SessionInfo>) -> Vec<ScalarUDF> {
    let none = || Signature::nullary(Volatility::Stable);
    let setting = Signature::one_of(
        vec![
            TypeSignature::Exact(vec![DataType::Utf8]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
        ],
        Volatility::Stable,
    );
    [
        (Kind::Version, none()),
        (Kind::CurrentDatabase, none()),
        (Kind::CurrentSchema, none()),
        (
            Kind::CurrentSchemas,
            Signature::exact(vec![DataType::Boolean], Volatility::Stable),
        ),
        (Kind::CurrentUser, none()),
        (Kind::SessionUser, none()),
        (Kind::CurrentSetting, setting),
        (
            Kind::SetConfig,
            Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
        ),
        (Kind::BackendPid, none()),
    ]
    .into_iter()
    .map(|(kind, signature)| {
        ScalarUDF::new_from_impl(SessionFn {
            kind,
            signature,
            info: info.clone(),
        })
    })
    .collect()
}

/// Rewrites PostgreSQL spellings DataFusion does not know: a `pg_catalog.` prefix on a
/// function name, and the SQL-standard niladic functions written without parentheses
/// (`current_user`, `session_user`, `user`, `current_role`, `current_catalog`).
pub struct PgSpellings;

impl ast::VisitorMut for PgSpellings {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        match expr {
            ast::Expr::Function(f) if f.name.0.len() == 2 => {
                let schema = f.name.0[0].as_ident().map(|i| i.value.to_lowercase());
                if schema.as_deref() == Some("pg_catalog") {
                    f.name.0.remove(0);
                }
            }
            ast::Expr::Identifier(i) if i.quote_style.is_none() => {
                let name = match i.value.to_lowercase().as_str() {
                    "current_user" | "user" | "current_role" => "current_user",
                    "session_user" => "session_user",
                    "current_catalog" => "current_database",
                    _ => return ControlFlow::Continue(()),
                };
                *expr = crate::pg_catalog::call(name, Vec::new());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
