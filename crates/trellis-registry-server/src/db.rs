//! The server's database: a search index of what the static form holds, publish tokens, and
//! owners. The same SQL runs on SQLite (the embedded default) and PostgreSQL (a `postgres://`
//! URL) through sqlx's `Any` driver.
//!
//! The signed static form is the source of truth for published versions: the `versions` and
//! `plugins` tables are rebuilt from it at start ([`Db::reconcile`]), so a crash between
//! writing a version and indexing it never leaves the two disagreeing.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use trellis_registry::index::IndexEntry;

use crate::ServerError;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub id: String,
    pub owner: String,
    /// `publish:<name or *>`, `yank:<name or *>`, `admin`.
    pub scopes: Vec<String>,
    pub created_at: String,
    pub revoked: bool,
}

impl Token {
    /// Whether the token carries `action` (`publish`, `yank`) for `name`, or is an admin's.
    pub fn allows(&self, action: &str, name: &str) -> bool {
        self.scopes.iter().any(|s| {
            s == "admin"
                || s.strip_prefix(action)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|pattern| pattern == "*" || pattern == name)
        })
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == "admin")
    }
}

/// A search hit: the newest non-yanked version of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub version: String,
    pub description: String,
    pub trust: String,
    pub categories: Vec<String>,
    pub keywords: Vec<String>,
    pub owners: Vec<String>,
    pub updated_at: String,
}

/// Which database the server runs on: the SQL is shared except for full-text search, which
/// each does its own way (SQLite's FTS5, PostgreSQL's `tsvector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One page of search results and how many match in all.
#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub total: u64,
    pub results: Vec<Summary>,
}

/// What to search for: words (each must match a word of the name, description or keywords, by
/// prefix and stem), an optional category and minimum trust, and which page.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest<'a> {
    pub text: &'a str,
    pub category: Option<&'a str>,
    pub min_trust: Option<trellis_trust::TrustLevel>,
    pub limit: u32,
    pub offset: u32,
}

/// Bumped when the index tables (everything rebuilt from the static form) change shape: they
/// are then dropped and made anew at start, which loses nothing.
const INDEX_SCHEMA: &str = "2";

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn db_err(e: sqlx::Error) -> ServerError {
    ServerError::Database(e.to_string())
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and creates the tables if needed.
    pub async fn connect(url: &str) -> Result<Db, ServerError> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(if url.starts_with("sqlite:") { 1 } else { 10 })
            .connect(url)
            .await
            .map_err(|e| ServerError::Database(format!("cannot open {url}: {e}")))?;
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let db = Db { pool, backend };
        db.create_schema().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn execute_all(&self, statements: &[&'static str]) -> Result<(), ServerError> {
        for statement in statements {
            sqlx::query(*statement)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn create_schema(&self) -> Result<(), ServerError> {
        // What cannot be rebuilt from the static form: owners and tokens.
        self.execute_all(&[
            "CREATE TABLE IF NOT EXISTS owners (
                name TEXT NOT NULL, principal TEXT NOT NULL, PRIMARY KEY (name, principal))",
            "CREATE TABLE IF NOT EXISTS tokens (
                id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
                scopes TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)",
            "CREATE TABLE IF NOT EXISTS schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ])
        .await?;
        let current: Option<String> =
            sqlx::query("SELECT value FROM schema_meta WHERE key = 'index'")
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?
                .map(|row| row.try_get("value"))
                .transpose()
                .map_err(db_err)?;
        if current.as_deref() != Some(INDEX_SCHEMA) {
            self.execute_all(&[
                "DROP TABLE IF EXISTS versions",
                "DROP TABLE IF EXISTS plugin_categories",
                "DROP TABLE IF EXISTS plugins",
            ])
            .await?;
            if self.backend == Backend::Sqlite {
                self.execute_all(&["DROP TABLE IF EXISTS plugins_fts"])
                    .await?;
            }
        }
        self.execute_all(&[
            "CREATE TABLE IF NOT EXISTS versions (
                name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
                yanked INTEGER NOT NULL, published_at TEXT NOT NULL, entry TEXT NOT NULL,
                PRIMARY KEY (name, version))",
            "CREATE TABLE IF NOT EXISTS plugin_categories (
                name TEXT NOT NULL, category TEXT NOT NULL, PRIMARY KEY (name, category))",
            "CREATE INDEX IF NOT EXISTS plugin_categories_by_category
                ON plugin_categories (category)",
        ])
        .await?;
        match self.backend {
            // FTS5 with the Porter stemmer: `scanning` finds `scanner`; words are matched by
            // prefix as well, so results come while a user types.
            Backend::Sqlite => {
                self.execute_all(&[
                    "CREATE TABLE IF NOT EXISTS plugins (
                        name TEXT PRIMARY KEY, version TEXT NOT NULL, description TEXT NOT NULL,
                        keywords TEXT NOT NULL, categories TEXT NOT NULL, trust TEXT NOT NULL,
                        trust_rank INTEGER NOT NULL, updated_at TEXT NOT NULL)",
                    "CREATE VIRTUAL TABLE IF NOT EXISTS plugins_fts USING fts5(
                        name, description, keywords,
                        tokenize = 'porter unicode61 remove_diacritics 2')",
                ])
                .await?
            }
            // A stored tsvector (names and keywords weigh more than descriptions) with a GIN
            // index. Punctuation in names (`@acme/scan`, `security-scanner`) is turned into
            // spaces first, or the parser would keep `acme/scan` as one file-path token.
            Backend::Postgres => {
                self.execute_all(&[
                    "CREATE TABLE IF NOT EXISTS plugins (
                        name TEXT PRIMARY KEY, version TEXT NOT NULL, description TEXT NOT NULL,
                        keywords TEXT NOT NULL, categories TEXT NOT NULL, trust TEXT NOT NULL,
                        trust_rank INTEGER NOT NULL, updated_at TEXT NOT NULL,
                        document tsvector GENERATED ALWAYS AS (
                            setweight(to_tsvector('english',
                                regexp_replace(name, '[^[:alnum:]]+', ' ', 'g')), 'A') ||
                            setweight(to_tsvector('english',
                                regexp_replace(keywords, '[^[:alnum:]]+', ' ', 'g')), 'A') ||
                            setweight(to_tsvector('english', description), 'B')) STORED)",
                    "CREATE INDEX IF NOT EXISTS plugins_document ON plugins USING GIN (document)",
                ])
                .await?
            }
        }
        sqlx::query(
            "INSERT INTO schema_meta (key, value) VALUES ('index', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(INDEX_SCHEMA)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Rebuilds the search index from the static form's index files (`name → versions`).
    pub async fn reconcile(
        &self,
        indexes: &BTreeMap<String, Vec<IndexEntry>>,
    ) -> Result<(), ServerError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut tables = vec!["versions", "plugin_categories", "plugins"];
        if self.backend == Backend::Sqlite {
            tables.push("plugins_fts");
        }
        for table in tables {
            // Table names from the constant list above; nothing from a request.
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for entries in indexes.values() {
            for entry in entries {
                insert_version(&mut tx, entry).await?;
            }
            if let Some(first) = entries.first() {
                refresh_plugin(&mut tx, self.backend, &first.name, entries).await?;
                if let Some(owner) = first.signer.as_ref().and_then(|s| s.principal.clone()) {
                    sqlx::query(
                        "INSERT INTO owners (name, principal) VALUES ($1, $2)
                         ON CONFLICT (name, principal) DO NOTHING",
                    )
                    .bind(first.name.clone())
                    .bind(owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
            }
        }
        tx.commit().await.map_err(db_err)
    }

    /// Records the versions of one plugin after a publish or a yank.
    pub async fn index_plugin(&self, entries: &[IndexEntry]) -> Result<(), ServerError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM versions WHERE name = $1")
            .bind(first.name.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for entry in entries {
            insert_version(&mut tx, entry).await?;
        }
        refresh_plugin(&mut tx, self.backend, &first.name, entries).await?;
        tx.commit().await.map_err(db_err)
    }

    /// Searches the index: the database's own full-text search ranks the plugins whose name,
    /// description or keywords match every word (by prefix and stem), best first; with no
    /// words, every plugin by name.
    pub async fn search(&self, request: &SearchRequest<'_>) -> Result<SearchPage, ServerError> {
        let words = search_words(request.text);
        let mut binds: Vec<String> = Vec::new();
        let mut placeholder = |value: String| {
            binds.push(value);
            format!("${}", binds.len())
        };
        let (from, mut conditions, order) = if words.is_empty() {
            ("plugins p".to_owned(), Vec::new(), "p.name".to_owned())
        } else {
            match self.backend {
                Backend::Sqlite => {
                    let p = placeholder(join_words(&words, |w| format!("\"{w}\"*"), " AND "));
                    (
                        "plugins_fts JOIN plugins p ON p.name = plugins_fts.name".to_owned(),
                        vec![format!("plugins_fts MATCH {p}")],
                        // Matches in the name count ten times, in keywords five times, as
                        // much as in the description.
                        "bm25(plugins_fts, 10.0, 1.0, 5.0), p.name".to_owned(),
                    )
                }
                Backend::Postgres => {
                    let p = placeholder(join_words(&words, |w| format!("{w}:*"), " & "));
                    (
                        "plugins p".to_owned(),
                        vec![format!("p.document @@ to_tsquery('english', {p})")],
                        format!("ts_rank(p.document, to_tsquery('english', {p})) DESC, p.name"),
                    )
                }
            }
        };
        if let Some(category) = request.category {
            let p = placeholder(category.to_owned());
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM plugin_categories c WHERE c.name = p.name AND c.category = {p})"
            ));
        }
        if let Some(min) = request.min_trust {
            conditions.push(format!("p.trust_rank >= {}", trust_rank(min)));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };

        // The SQL is made of constants and numbered placeholders; every value from the request
        // is bound, and the words are letters and digits only.
        let mut count = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {from} {filter}"
        )));
        for value in &binds {
            count = count.bind(value.clone());
        }
        let total: i64 = count
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .try_get("n")
            .map_err(db_err)?;

        let sql = format!(
            "SELECT p.name, p.version, p.description, p.trust, p.categories, p.keywords,
                    p.updated_at
             FROM {from} {filter} ORDER BY {order} LIMIT {} OFFSET {}",
            request.limit, request.offset
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in &binds {
            select = select.bind(value.clone());
        }
        let rows = select.fetch_all(&self.pool).await.map_err(db_err)?;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            results.push(self.summary_from(&row).await?);
        }
        Ok(SearchPage {
            total: u64::try_from(total).unwrap_or(0),
            results,
        })
    }

    /// How many plugins have a version that is not yanked.
    pub async fn plugin_count(&self) -> Result<u64, ServerError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM plugins")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .try_get("n")
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn summary_from(&self, row: &sqlx::any::AnyRow) -> Result<Summary, ServerError> {
        let name: String = row.try_get("name").map_err(db_err)?;
        let list =
            |text: String| -> Vec<String> { serde_json::from_str(&text).unwrap_or_default() };
        Ok(Summary {
            owners: self.owners(&name).await?,
            version: row.try_get("version").map_err(db_err)?,
            description: row.try_get("description").map_err(db_err)?,
            trust: row.try_get("trust").map_err(db_err)?,
            categories: list(row.try_get("categories").map_err(db_err)?),
            keywords: list(row.try_get("keywords").map_err(db_err)?),
            updated_at: row.try_get("updated_at").map_err(db_err)?,
            name,
        })
    }

    /// Categories with the number of plugins in each.
    pub async fn categories(&self) -> Result<BTreeMap<String, u64>, ServerError> {
        let rows =
            sqlx::query("SELECT category, COUNT(*) AS n FROM plugin_categories GROUP BY category")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n").map_err(db_err)?;
                Ok((
                    row.try_get("category").map_err(db_err)?,
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Every version of `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<IndexEntry>, ServerError> {
        let rows = sqlx::query("SELECT entry FROM versions WHERE name = $1")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut entries = Vec::new();
        for row in rows {
            let text: String = row.try_get("entry").map_err(db_err)?;
            let entry: IndexEntry = serde_json::from_str(&text)
                .map_err(|e| ServerError::Database(format!("a stored entry of {name}: {e}")))?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(entries)
    }

    pub async fn plugin(&self, name: &str) -> Result<Option<Summary>, ServerError> {
        let row = sqlx::query(
            "SELECT name, version, description, trust, categories, keywords, updated_at
             FROM plugins WHERE name = $1",
        )
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(row) => Ok(Some(self.summary_from(&row).await?)),
            None => Ok(None),
        }
    }

    pub async fn owners(&self, name: &str) -> Result<Vec<String>, ServerError> {
        let rows = sqlx::query("SELECT principal FROM owners WHERE name = $1 ORDER BY principal")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("principal").map_err(db_err))
            .collect()
    }

    pub async fn add_owner(&self, name: &str, principal: &str) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO owners (name, principal) VALUES ($1, $2)
             ON CONFLICT (name, principal) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(principal.to_owned())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Creates a token and returns it with its secret, which is shown once and stored only
    /// as a hash.
    pub async fn create_token(
        &self,
        owner: &str,
        scopes: &[String],
    ) -> Result<(Token, String), ServerError> {
        for scope in scopes {
            let ok = scope == "admin"
                || ["publish:", "yank:"]
                    .iter()
                    .any(|p| scope.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                return Err(ServerError::BadRequest(format!(
                    "scope `{scope}` is not one of publish:NAME, publish:*, yank:NAME, yank:*, admin"
                )));
            }
        }
        let secret = format!("trl_{}", hex::encode(rand::random::<[u8; 24]>()));
        let id = hex::encode(rand::random::<[u8; 6]>());
        let created_at = Utc::now().to_rfc3339();
        sqlx::query(
            "INSERT INTO tokens (id, hash, owner, scopes, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.clone())
        .bind(hash_token(&secret))
        .bind(owner.to_owned())
        .bind(serde_json::to_string(scopes).unwrap_or_default())
        .bind(created_at.clone())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((
            Token {
                id,
                owner: owner.to_owned(),
                scopes: scopes.to_vec(),
                created_at,
                revoked: false,
            },
            secret,
        ))
    }

    /// The token a secret belongs to, unless it is unknown or revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Token>, ServerError> {
        let row = sqlx::query(
            "SELECT id, owner, scopes, created_at, revoked_at FROM tokens WHERE hash = $1",
        )
        .bind(hash_token(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = token_from(&row)?;
        Ok((!token.revoked).then_some(token))
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, ServerError> {
        let rows = sqlx::query(
            "SELECT id, owner, scopes, created_at, revoked_at FROM tokens ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(token_from).collect()
    }

    /// Revokes a token; `false` when no token has that id.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, ServerError> {
        let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2")
            .bind(Utc::now().to_rfc3339())
            .bind(id.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }
}

fn token_from(row: &sqlx::any::AnyRow) -> Result<Token, ServerError> {
    let scopes: String = row.try_get("scopes").map_err(db_err)?;
    let revoked: Option<String> = row.try_get("revoked_at").map_err(db_err)?;
    Ok(Token {
        id: row.try_get("id").map_err(db_err)?,
        owner: row.try_get("owner").map_err(db_err)?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: row.try_get("created_at").map_err(db_err)?,
        revoked: revoked.is_some(),
    })
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &IndexEntry,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO versions (name, version, sha256, yanked, published_at, entry)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.name.clone())
    .bind(entry.version.to_string())
    .bind(entry.sha256.clone())
    .bind(i32::from(entry.yanked))
    .bind(entry.published_at.to_rfc3339())
    .bind(serde_json::to_string(entry).unwrap_or_default())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The words of a search, lowercased: runs of letters and digits (so punctuation in a query
/// can never reach the full-text syntax of either database).
fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A full-text query in either database's syntax: each word as `term` writes it, all required.
fn join_words(words: &[String], term: impl Fn(&str) -> String, and: &str) -> String {
    words.iter().map(|w| term(w)).collect::<Vec<_>>().join(and)
}

/// Trust levels as numbers that order like the levels, for `trust >= …` in SQL.
fn trust_rank(level: trellis_trust::TrustLevel) -> i32 {
    trellis_trust::TrustLevel::ALL
        .iter()
        .position(|l| *l == level)
        .and_then(|i| i32::try_from(i).ok())
        .unwrap_or(0)
}

/// The `plugins` row (with its categories and, on SQLite, its full-text row): the newest
/// version that is not yanked, or none when all are.
async fn refresh_plugin(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    name: &str,
    entries: &[IndexEntry],
) -> Result<(), ServerError> {
    let mut tables = vec!["plugin_categories", "plugins"];
    if backend == Backend::Sqlite {
        tables.push("plugins_fts");
    }
    for table in tables {
        // Table names from the constant list above.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE name = $1"
        )))
        .bind(name.to_owned())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    let Some(newest) = entries
        .iter()
        .filter(|e| !e.yanked)
        .max_by(|a, b| a.version.cmp(&b.version))
    else {
        return Ok(());
    };
    let keywords = serde_json::to_string(&newest.keywords).unwrap_or_default();
    let rank = trellis_trust::TrustLevel::parse(&newest.trust).map_or(0, trust_rank);
    sqlx::query(
        "INSERT INTO plugins (name, version, description, keywords, categories, trust, trust_rank,
                              updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(name.to_owned())
    .bind(newest.version.to_string())
    .bind(newest.description.clone())
    .bind(keywords)
    .bind(serde_json::to_string(&newest.categories).unwrap_or_default())
    .bind(newest.trust.clone())
    .bind(rank)
    .bind(newest.published_at.to_rfc3339())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    let mut categories = newest.categories.clone();
    categories.sort();
    categories.dedup();
    for category in categories {
        sqlx::query("INSERT INTO plugin_categories (name, category) VALUES ($1, $2)")
            .bind(name.to_owned())
            .bind(category)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    if backend == Backend::Sqlite {
        sqlx::query("INSERT INTO plugins_fts (name, description, keywords) VALUES ($1, $2, $3)")
            .bind(name.to_owned())
            .bind(newest.description.clone())
            .bind(newest.keywords.join(" "))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}
